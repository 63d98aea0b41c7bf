"""Read-model builders: one module per read model, plus the runner."""
