"""Built-in migflow plugin: lab."""
