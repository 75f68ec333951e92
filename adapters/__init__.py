"""Built-in touch-point adapters, registered exactly like third-party ones."""
