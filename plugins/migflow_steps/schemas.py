"""JSON Schemas of the built-in steps' options (draft 2020-12).

Names and units follow QMP: capabilities are ``migrate-set-capabilities``
names, parameters are ``migrate-set-parameters`` names in QMP units.
"""

CAPABILITIES = [
    "xbzrle",
    "auto-converge",
    "postcopy-ram",
    "multifd",
    "compress",
    "zero-blocks",
    "return-path",
    "pause-before-switchover",
    "events",
    "late-block-activate",
    "validate-uuid",
    "rdma-pin-all",
    "dirty-limit",
    "switchover-ack",
]

PARAMETERS = {
    "downtime-limit": {"type": "integer", "minimum": 1, "maximum": 2000000, "description": "maximum downtime, ms"},
    "max-bandwidth": {"type": "integer", "minimum": 1, "description": "bandwidth cap, bytes/s"},
    "xbzrle-cache-size": {"type": "integer", "minimum": 4096, "description": "XBZRLE cache, bytes"},
    "multifd-channels": {"type": "integer", "minimum": 1, "maximum": 255},
    "cpu-throttle-initial": {"type": "integer", "minimum": 1, "maximum": 99, "description": "percent"},
    "cpu-throttle-increment": {"type": "integer", "minimum": 1, "maximum": 99, "description": "percent"},
    "cpu-throttle-tailslow": {"type": "boolean"},
    "max-cpu-throttle": {"type": "integer", "minimum": 1, "maximum": 99, "description": "percent"},
    "compress-level": {"type": "integer", "minimum": 0, "maximum": 9},
    "compress-threads": {"type": "integer", "minimum": 1, "maximum": 255},
    "decompress-threads": {"type": "integer", "minimum": 1, "maximum": 255},
    "multifd-compression": {"enum": ["none", "zlib", "zstd"]},
    "multifd-zlib-level": {
        "type": "integer",
        "minimum": 0,
        "maximum": 9,
        "description": "zlib level of multifd compression (--comp-zlib-level; QEMU 9.0 applies it)",
    },
    "multifd-zstd-level": {
        "type": "integer",
        "minimum": 0,
        "maximum": 20,
        "description": "zstd level of multifd compression (--comp-zstd-level; QEMU 9.0 applies it)",
    },
    "vcpu-dirty-limit": {"type": "integer", "minimum": 1, "description": "MB/s per vCPU with the dirty-limit capability (QEMU 8.1)"},
    "avail-switchover-bandwidth": {"type": "integer", "minimum": 0, "description": "bytes/s QEMU may assume for the switchover (QEMU 8.2)"},
    "zero-page-detection": {"enum": ["none", "legacy", "multifd"], "description": "where zero pages are found (QEMU 9.0)"},
    "max-postcopy-bandwidth": {"type": "integer", "minimum": 0, "description": "bytes/s"},
}

FLAGS = [
    "live",
    "persistent",
    "undefinesource",
    "compressed",
    "auto-converge",
    "postcopy",
    "tls",
    "abort-on-error",
    "unsafe",
    "parallel",
    "paused",
    "copy-storage-all",
    "copy-storage-inc",
    "copy-storage-synchronous-writes",
    "offline",
    "change-protection",
    "zerocopy",
]

PREPARE_OPTIONS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "wait_timeout_s": {
            "type": "number",
            "minimum": 1,
            "maximum": 3600,
            "default": 60,
            "description": "how long to wait for the guest to run (and for its first heartbeat)",
        },
        "wait_steady": {
            "type": "boolean",
            "default": True,
            "description": "wait until the guest announces its steady state (working set written once, dirty rate settled); a guest without a heartbeat is recorded as not observed",
        },
        "steady_timeout_s": {"type": "number", "minimum": 1, "maximum": 3600, "default": 120, "description": "how long to wait for the steady state at most"},
        "warmup_s": {
            "type": "number",
            "minimum": 0,
            "maximum": 3600,
            "default": 0,
            "description": "an extra fixed wait after the guest runs (and is steady), e.g. for an existing domain's own workload",
        },
    },
}

SETCAPS_OPTIONS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "capabilities": {
            "type": "object",
            "description": "QEMU migration capabilities to switch on (true) or off (false)",
            "propertyNames": {"enum": CAPABILITIES},
            "additionalProperties": {"type": "boolean"},
        },
        "parameters": {
            "type": "object",
            "description": "QEMU migration parameters, QMP names and units",
            "properties": PARAMETERS,
            "additionalProperties": False,
        },
    },
}

MIGRATE_OPTIONS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "mode": {
            "type": "string",
            "description": "a migration mode contributed by a plugin: managed-direct, p2p, p2p-tunnelled, unmanaged-direct, zstack ...; default: the backend's default mode",
        },
        "flags": {"type": "array", "items": {"enum": FLAGS}, "uniqueItems": True, "description": "extra flags on top of the mode's own"},
        "round_trip": {"type": "boolean", "description": "overrides the workflow's round_trip"},
        "timeout": {
            "type": "object",
            "additionalProperties": False,
            "required": ["seconds"],
            "properties": {
                "seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400},
                "action": {
                    "enum": ["abort", "suspend", "postcopy"],
                    "default": "suspend",
                    "description": "what happens when the time is up: suspend (the default, like virsh migrate --timeout) pauses the guest so the migration completes; abort cancels it; postcopy switches to post-copy",
                },
            },
        },
        "expect": {
            "enum": ["success", "failure", "any"],
            "default": "success",
            "description": "'failure': a failing leg is the expected outcome (recorded failed, the step passes)",
        },
        "migrate_uri": {"type": "string", "description": "hypervisor-level destination (tcp://HOST[:PORT]); default: chosen by the mode"},
        "settle_s": {"type": "number", "minimum": 0, "maximum": 600, "default": 0, "description": "pause between the legs of a round trip"},
        "dname": {"type": "string", "pattern": "^[^/\\s]+$", "description": "the domain's name on the destination (virsh migrate --dname)"},
        "listen_address": {"type": "string", "description": "the address the destination QEMU listens on for the migration stream (virsh --listen-address)"},
        "migrate_disks": {
            "type": "array",
            "items": {"type": "string", "pattern": "^[a-z]+$"},
            "minItems": 1,
            "uniqueItems": True,
            "description": "which disks to copy, by target (vda ...), with copy-storage-* (virsh --migrate-disks)",
        },
        "disks_port": {
            "type": "integer",
            "minimum": 1,
            "maximum": 65535,
            "description": "the port of the destination's NBD server for copy-storage-* (virsh --disks-port)",
        },
        "destination_xml": {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "properties": {"title": {"type": "string"}, "description": {"type": "string"}},
            "description": "changes to the domain's definition on the destination: the running domain's XML with these elements replaced (virsh --xml)",
        },
        "persistent_xml": {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "properties": {"title": {"type": "string"}, "description": {"type": "string"}},
            "description": "changes to the persistent definition the destination keeps, with the persistent flag (virsh --persistent-xml)",
        },
        "postcopy_switch": {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "maxProperties": 1,
            "properties": {
                "after_iterations": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 1000,
                    "description": "switch when pass N+1 over RAM begins (1: like virsh --postcopy-after-precopy)",
                },
                "when_stalled": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 100,
                    "description": "switch when RAM still to send did not shrink for this many passes in a row",
                },
            },
            "description": "switch the migration to post-copy (needs the postcopy flag)",
        },
        "concurrency": {
            "type": "integer",
            "minimum": 1,
            "maximum": 16,
            "default": 1,
            "description": "with several guests ([domain.create] count): how many legs run at once (like Nova's max_concurrent_live_migrations)",
        },
    },
}

COLLECT_OPTIONS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "interval_ms": {
            "type": "number",
            "minimum": 0,
            "maximum": 60000,
            "default": 100,
            "description": "sampling period of running legs; 0 switches periodic samples off",
        },
        "iteration_samples": {"type": "boolean", "default": True, "description": "also record one sample per migration iteration"},
    },
}

RESTORE_OPTIONS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "keep_created": {"type": "boolean", "default": False, "description": "keep a domain the workflow created (default: destroy and undefine it)"},
    },
}
