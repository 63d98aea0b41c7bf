"""Artifacts: the files a job's phases produced, uploaded by its worker and stored by Helix.

What each stored file is (path, phase, attempt, size, sha256) is an event of the job's stream
(`job.artifact_stored`, or `job.artifact_not_stored` with the reason), decided and appended
through the one unit of work; the job's state folds them into the current version of each
path. The bytes live in PostgreSQL, in a table of chunks, not in large objects: chunk rows are
plain rows that a dump, a replica and a transaction treat like any other, deleting a blob's
row takes its chunks with it (large objects would need `lo_unlink` bookkeeping of their own),
and each chunk is one bounded `bytea` written or read in its own statement, so neither the
server nor the worker ever holds a whole file.

An upload is fenced like every worker report: its fencing token and the running phase are
checked (and the limits, by the decider) before a byte is read, and again when it is recorded.
The bytes go to a blob of their own as they arrive, hashed on the way; only a body of the
declared size and sha256 is recorded, and the blob becomes the content's in the recording
transaction (`artifact_contents`, one blob per sha256: the same bytes uploaded again are
dropped). Whatever does not end recorded is deleted, at once or, if the server stopped
mid-upload, by the reaper (`drop_abandoned`).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg
import attrs

from helix.config import Settings
from helix.domain import job
from helix.domain.job import Artifact, JobState
from helix.errors import BadRequest, NotFound, ValidationError
from helix.services.caller import Caller
from helix.services.unit import Tx, Writer
from helix.services.workers import WorkerService
from helix.sql import load

log = logging.getLogger(__name__)
SQL = load("helix.services", "artifacts.sql")
CHUNK_BYTES = 1024 * 1024
# An upload not recorded within this long is one the server abandoned.
ABANDONED_AFTER = timedelta(hours=1)


@attrs.frozen(kw_only=True)
class Download:
    """A stored file's current version and where its bytes are."""

    artifact: Artifact
    blob_id: UUID
    chunks: int


class ArtifactService:
    def __init__(self, writer: Writer, settings: Settings, workers: WorkerService) -> None:
        self.writer = writer
        self.settings = settings
        self.workers = workers

    @property
    def pool(self) -> asyncpg.Pool:
        return self.writer.store.pool

    def command(
        self,
        *,
        fencing_token: int,
        phase: str,
        path: str,
        size: int,
        sha256: str,
        change: job.FileChange | None,
    ) -> job.StoreArtifact:
        return job.StoreArtifact(
            fencing_token=fencing_token,
            phase=phase,
            path=path,
            size=size,
            sha256=sha256,
            change=change,
            max_bytes=self.settings.artifact_max_bytes or None,
            job_max_bytes=self.settings.job_artifacts_max_bytes or None,
            at=self.writer.now(),
        )

    async def store(
        self,
        caller: Caller,
        job_id: UUID,
        command: job.StoreArtifact,
        body: AsyncIterable[bytes],
    ) -> Artifact:
        """Store the file `body` streams, as `command` describes it, and record it; refused
        (and nothing kept) on a stale token, a phase not running, a limit, or a body that is
        not `command.size` bytes with `command.sha256`."""
        await self.writer.run(caller, lambda tx: self._decided(tx, job_id, command, dry=True))
        blob_id = uuid.uuid4()
        adopted = False
        try:
            chunks = await self._write(job_id, blob_id, command, body)
            artifact, adopted = await self.writer.run(
                caller, lambda tx: self._record(tx, job_id, command, blob_id, chunks)
            )
            return artifact
        finally:
            if not adopted:
                async with self.pool.acquire() as conn:
                    await conn.execute(SQL["drop_blob"], blob_id)

    async def _decided(
        self, tx: Tx, job_id: UUID, command: job.StoreArtifact, *, dry: bool
    ) -> tuple[JobState, str]:
        """The job with the upload decided (appended unless `dry`) and the path it is stored
        under: the file's own, with any of the job's secrets in it masked, as in its report."""
        state = await self.workers.leased_job(tx, job_id, command.fencing_token)
        [stamped] = self.workers.masked(state, [attrs.evolve(command, at=tx.at)])
        assert isinstance(stamped, job.StoreArtifact)
        if dry:
            job.decide(state, stamped)  # refusals only: nothing is appended yet
            return state, stamped.path
        state = await tx.decide_job(job_id, stamped)
        return await self.workers.renew(tx, job_id, state), stamped.path

    async def _write(
        self, job_id: UUID, blob_id: UUID, command: job.StoreArtifact, body: AsyncIterable[bytes]
    ) -> int:
        """Write `body` to the blob in chunks as it arrives; how many chunks."""
        async with self.pool.acquire() as conn:
            await conn.execute(SQL["new_blob"], blob_id, job_id)
        digest = hashlib.sha256()
        size = 0
        seq = 0
        pending = bytearray()
        async for piece in body:
            size += len(piece)
            if size > command.size:
                raise BadRequest(
                    f"the body is longer than the {command.size} bytes of `size`", field="size"
                )
            digest.update(piece)
            pending += piece
            while len(pending) >= CHUNK_BYTES:
                with memoryview(pending) as view:
                    chunk = bytes(view[:CHUNK_BYTES])
                del pending[:CHUNK_BYTES]
                await self._add_chunk(blob_id, seq, chunk)
                seq += 1
        if pending:
            await self._add_chunk(blob_id, seq, bytes(pending))
            seq += 1
        if size != command.size:
            raise BadRequest(
                f"the body is {size} bytes, not the {command.size} bytes of `size`", field="size"
            )
        if digest.hexdigest() != command.sha256.lower():
            raise ValidationError(
                "the body's sha256 is not the one given: it was changed or cut on its way",
                field="sha256",
                received_sha256=digest.hexdigest(),
            )
        return seq

    async def _add_chunk(self, blob_id: UUID, seq: int, data: bytes) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(SQL["add_chunk"], blob_id, seq, data)

    async def _record(
        self, tx: Tx, job_id: UUID, command: job.StoreArtifact, blob_id: UUID, chunks: int
    ) -> tuple[Artifact, bool]:
        """Record the checked upload (the event) and make its blob the content's, in one
        transaction; whether the blob was adopted (not when the content was already here)."""
        state, path = await self._decided(tx, job_id, command, dry=False)
        sha256 = command.sha256.lower()
        adopted = await tx.conn.fetchval(SQL["adopt_blob"], sha256, blob_id, command.size, chunks)
        return state.artifacts[path], adopted is not None

    # --- reads ------------------------------------------------------------------------------

    async def listed(self, caller: Caller, job_id: UUID) -> list[Artifact]:
        """The current version of each of the job's files, by path; 404 for a job the caller
        may not see."""
        state = await self.writer.run(caller, lambda tx: tx.visible_job(job_id))
        return [state.artifacts[path] for path in sorted(state.artifacts)]

    async def download(self, caller: Caller, job_id: UUID, path: str) -> Download:
        """The stored current version of the job's file at `path`; 404 if the job is not the
        caller's to see, or no such file is stored."""
        state = await self.writer.run(caller, lambda tx: tx.visible_job(job_id))
        artifact = state.artifacts.get(path)
        if artifact is None or not artifact.stored or artifact.sha256 is None:
            raise NotFound("no file is stored at this path", job_id=str(job_id), path=path)
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(SQL["content"], artifact.sha256)
        if row is None:
            raise NotFound("the file's content is not stored", job_id=str(job_id), path=path)
        return Download(artifact=artifact, blob_id=row["blob_id"], chunks=row["chunks"])

    async def chunks(self, found: Download) -> AsyncIterator[bytes]:
        """The file's bytes, a chunk at a time."""
        for seq in range(found.chunks):
            async with self.pool.acquire() as conn:
                data: bytes | None = await conn.fetchval(SQL["chunk"], found.blob_id, seq)
            if data is None:
                raise NotFound("a chunk of the file is missing", seq=seq)
            yield data

    async def drop_abandoned(self, now: datetime) -> int:
        """Delete uploads never recorded (the server stopped mid-upload); how many."""
        async with self.pool.acquire() as conn:
            status: str = await conn.execute(SQL["drop_abandoned"], now - ABANDONED_AFTER)
        return int(status.split()[-1])


__all__ = ["CHUNK_BYTES", "ArtifactService", "Download"]
