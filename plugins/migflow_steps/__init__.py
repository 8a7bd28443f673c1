"""Built-in migflow plugin: steps."""
