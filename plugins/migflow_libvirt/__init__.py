"""Built-in migflow plugin: libvirt."""
