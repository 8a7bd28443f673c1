"""Built-in migflow plugin: a QEMU backend without libvirt (QMP directly)."""
