-- The seed write-up's comparison table, per mode and direction:
--   migflow query --results seed.duckdb --file docs/sql/seed_summary.sql
-- Medians of the completed legs; total_time and downtime are QEMU's own figures,
-- job_time_elapsed libvirt's job clock, wall_ms what `time virsh migrate` shows.
SELECT mode,
       params->>'$.xbzrle' AS xbzrle,
       direction,
       count(*) FILTER (WHERE status = 'completed')              AS legs,
       count(*) FILTER (WHERE status <> 'completed')             AS failed,
       round(median(wall_ms))                                    AS wall_ms,
       round(median(job_time_elapsed))                           AS job_ms,
       round(median(total_time))                                 AS total_ms,
       round(median(downtime))                                   AS downtime_ms,
       round(median(guest_pause_ms))                             AS guest_pause_ms,
       round(median(ram_mbps))                                   AS mbps,
       round(median(ram_transferred) / 2^20, 1)                  AS sent_mib,
       any_value(error) FILTER (WHERE status <> 'completed')     AS error
FROM legs
WHERE workflow = 'seed_comparison'
GROUP BY ALL
ORDER BY mode, xbzrle, direction;
