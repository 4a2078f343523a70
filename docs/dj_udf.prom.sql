-- dj_udf's views in Prometheus' text format (docs/monitoring.md): run by a
-- monitoring account with SELECT on the four views, e.g.
--   mariadb -N -B -r < docs/dj_udf.prom.sql > /var/lib/prometheus/node-exporter/dj_udf.prom.tmp
-- and renamed into node_exporter's textfile folder. One metric family per
-- statement; reading dj_udf.health runs the probes of every store.

SELECT '# HELP dj_udf_objects_total Objects put, read, verified, exported and deleted since the library was loaded or reset.';
SELECT '# TYPE dj_udf_objects_total counter';
SELECT CONCAT('dj_udf_objects_total{store="', s.store, '",op="', o.op, '"} ',
              CASE o.op WHEN 'put' THEN s.objects_put WHEN 'read' THEN s.objects_read WHEN 'verify' THEN s.objects_verified
                        WHEN 'export' THEN s.objects_exported ELSE s.objects_deleted END)
  FROM dj_udf.store_stats s
 CROSS JOIN (SELECT 'put' AS op UNION ALL SELECT 'read' UNION ALL SELECT 'verify' UNION ALL SELECT 'export' UNION ALL SELECT 'delete') o;

SELECT '# HELP dj_udf_bytes_total Bytes put, read, verified and exported.';
SELECT '# TYPE dj_udf_bytes_total counter';
SELECT CONCAT('dj_udf_bytes_total{store="', s.store, '",op="', o.op, '"} ',
              CASE o.op WHEN 'put' THEN s.bytes_put WHEN 'read' THEN s.bytes_read WHEN 'verify' THEN s.bytes_verified
                        ELSE s.bytes_exported END)
  FROM dj_udf.store_stats s
 CROSS JOIN (SELECT 'put' AS op UNION ALL SELECT 'read' UNION ALL SELECT 'verify' UNION ALL SELECT 'export') o;

SELECT '# HELP dj_udf_errors_total Failed calls (and objects an audit found missing or different), by kind.';
SELECT '# TYPE dj_udf_errors_total counter';
SELECT CONCAT('dj_udf_errors_total{store="', s.store, '",kind="', k.kind, '"} ',
              CASE k.kind WHEN 'missing' THEN s.errors_missing WHEN 'mismatch' THEN s.errors_mismatch
                          WHEN 'refused_path' THEN s.errors_refused_path WHEN 'timeout' THEN s.errors_timeout
                          WHEN 'unreachable' THEN s.errors_unreachable WHEN 's3_4xx' THEN s.errors_s3_4xx
                          WHEN 's3_5xx' THEN s.errors_s3_5xx WHEN 'denied' THEN s.errors_denied
                          WHEN 'killed' THEN s.errors_killed ELSE s.errors_other END)
  FROM dj_udf.store_stats s
 CROSS JOIN (SELECT 'missing' AS kind UNION ALL SELECT 'mismatch' UNION ALL SELECT 'refused_path' UNION ALL SELECT 'timeout'
             UNION ALL SELECT 'unreachable' UNION ALL SELECT 's3_4xx' UNION ALL SELECT 's3_5xx' UNION ALL SELECT 'denied'
             UNION ALL SELECT 'killed' UNION ALL SELECT 'other') k;

SELECT '# HELP dj_udf_s3_requests_total S3 requests sent, by method (retries not included).';
SELECT '# TYPE dj_udf_s3_requests_total counter';
SELECT CONCAT('dj_udf_s3_requests_total{store="', s.store, '",method="', m.method, '"} ',
              CASE m.method WHEN 'HEAD' THEN s.s3_head WHEN 'GET' THEN s.s3_get WHEN 'PUT' THEN s.s3_put
                            WHEN 'POST' THEN s.s3_post ELSE s.s3_delete END)
  FROM dj_udf.store_stats s
 CROSS JOIN (SELECT 'HEAD' AS method UNION ALL SELECT 'GET' UNION ALL SELECT 'PUT' UNION ALL SELECT 'POST' UNION ALL SELECT 'DELETE') m;

SELECT '# HELP dj_udf_s3_retries_total S3 requests sent again after a failure.';
SELECT '# TYPE dj_udf_s3_retries_total counter';
SELECT CONCAT('dj_udf_s3_retries_total{store="', store, '"} ', retries) FROM dj_udf.store_stats;

SELECT '# HELP dj_udf_latency_milliseconds Time per object and operation (upper bounds of log-scale buckets).';
SELECT '# TYPE dj_udf_latency_milliseconds gauge';
SELECT CONCAT('dj_udf_latency_milliseconds{store="', l.store, '",op="', l.op, '",quantile="', q.q, '"} ',
              CASE q.q WHEN '0.5' THEN l.p50_ms WHEN '0.95' THEN l.p95_ms ELSE l.p99_ms END)
  FROM dj_udf.store_latency l
 CROSS JOIN (SELECT '0.5' AS q UNION ALL SELECT '0.95' UNION ALL SELECT '0.99') q
 WHERE l.timed > 0;

SELECT '# HELP dj_udf_transfers Transfers running now.';
SELECT '# TYPE dj_udf_transfers gauge';
SELECT CONCAT('dj_udf_transfers{store="', s.store, '"} ', COUNT(t.store))
  FROM dj_udf.store_stats s LEFT JOIN dj_udf.transfers t ON t.store = s.store
 GROUP BY s.store;

SELECT '# HELP dj_udf_store_healthy 1 when the store passed its health check (dj_udf.health) now.';
SELECT '# TYPE dj_udf_store_healthy gauge';
SELECT CONCAT('dj_udf_store_healthy{store="', store, '"} ', healthy) FROM dj_udf.health;
