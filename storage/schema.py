"""The five seed tables, their views and the versioned migrations that build them.

Each migration is a list of statements applied in one transaction; ``schema_version``
records the highest applied. Never edit a released migration: add a new one.
"""

from __future__ import annotations

SEED_TABLES = ("models", "hardware_platforms", "test_runs", "performance_results", "hardware_compatibility")
VIEWS = ("results_view", "failures_view")
ALLOWED_QUERY_TABLES = frozenset(SEED_TABLES + VIEWS)

_V1 = [
    "CREATE SEQUENCE IF NOT EXISTS seq_models START 1",
    "CREATE SEQUENCE IF NOT EXISTS seq_hardware START 1",
    "CREATE SEQUENCE IF NOT EXISTS seq_test_runs START 1",
    "CREATE SEQUENCE IF NOT EXISTS seq_results START 1",
    "CREATE SEQUENCE IF NOT EXISTS seq_compatibility START 1",
    """CREATE TABLE models (
        model_id INTEGER PRIMARY KEY DEFAULT nextval('seq_models'),
        model_name VARCHAR NOT NULL UNIQUE,
        model_family VARCHAR,
        model_type VARCHAR,
        modality VARCHAR,
        parameters_million DOUBLE,
        source VARCHAR,
        created_at TIMESTAMP DEFAULT current_timestamp
    )""",
    """CREATE TABLE hardware_platforms (
        hardware_id INTEGER PRIMARY KEY DEFAULT nextval('seq_hardware'),
        hardware_type VARCHAR NOT NULL,
        device_name VARCHAR NOT NULL,
        platform VARCHAR NOT NULL,
        memory_gb DOUBLE,
        compute_units INTEGER,
        driver_version VARCHAR,
        capabilities JSON,
        created_at TIMESTAMP DEFAULT current_timestamp,
        UNIQUE (platform, device_name)
    )""",
    """CREATE TABLE test_runs (
        test_run_id INTEGER PRIMARY KEY DEFAULT nextval('seq_test_runs'),
        run_id VARCHAR NOT NULL UNIQUE,
        status VARCHAR NOT NULL,
        priority VARCHAR,
        request JSON,
        total_configs INTEGER DEFAULT 0,
        completed_configs INTEGER DEFAULT 0,
        current_step VARCHAR,
        error VARCHAR,
        environment JSON,
        created_at TIMESTAMP DEFAULT current_timestamp,
        started_at TIMESTAMP,
        completed_at TIMESTAMP
    )""",
    """CREATE TABLE performance_results (
        result_id INTEGER PRIMARY KEY DEFAULT nextval('seq_results'),
        run_id VARCHAR,
        model_id INTEGER,
        hardware_id INTEGER,
        batch_size INTEGER NOT NULL,
        precision VARCHAR NOT NULL,
        sequence_length INTEGER,
        average_latency_ms DOUBLE,
        p50_latency_ms DOUBLE,
        p90_latency_ms DOUBLE,
        p99_latency_ms DOUBLE,
        throughput_items_per_second DOUBLE,
        memory_peak_mb DOUBLE,
        created_at TIMESTAMP DEFAULT current_timestamp
    )""",
    """CREATE TABLE hardware_compatibility (
        compatibility_id INTEGER PRIMARY KEY DEFAULT nextval('seq_compatibility'),
        run_id VARCHAR,
        model_id INTEGER,
        hardware_id INTEGER,
        batch_size INTEGER,
        precision VARCHAR,
        is_compatible BOOLEAN NOT NULL,
        error_type VARCHAR,
        error_message VARCHAR,
        created_at TIMESTAMP DEFAULT current_timestamp
    )""",
]

# v2: the full statistics, raw samples, the identity of a config for incremental
# runs and resume, and the views analysts query.
_V2 = [
    *(
        f"ALTER TABLE performance_results ADD COLUMN {column}"
        for column in (
            "config_key VARCHAR",
            "fingerprint VARCHAR",
            "image_size INTEGER",
            "weights VARCHAR",
            "n_samples INTEGER",
            "std_latency_ms DOUBLE",
            "min_latency_ms DOUBLE",
            "p95_latency_ms DOUBLE",
            "max_latency_ms DOUBLE",
            "ci_low_ms DOUBLE",
            "ci_high_ms DOUBLE",
            "ci_met BOOLEAN",
            "throughput_tokens_per_second DOUBLE",
            "load_time_ms DOUBLE",
            "cold_latency_ms DOUBLE",
            "threads INTEGER",
            "torch_version VARCHAR",
            "samples_ms DOUBLE[]",
            "stop_reason VARCHAR",
        )
    ),
    "ALTER TABLE hardware_compatibility ADD COLUMN config_key VARCHAR",
    "ALTER TABLE test_runs ADD COLUMN fingerprint VARCHAR",
    "ALTER TABLE test_runs ADD COLUMN total_models INTEGER",
    "ALTER TABLE test_runs ADD COLUMN completed_models INTEGER",
    "CREATE INDEX idx_results_key ON performance_results (config_key, fingerprint)",
    "CREATE INDEX idx_results_run ON performance_results (run_id)",
    """CREATE VIEW results_view AS
        SELECT pr.result_id, pr.run_id, m.model_name, m.model_family, m.model_type, m.modality,
               h.hardware_type, h.platform AS hardware, h.device_name,
               pr.batch_size, pr.precision, pr.sequence_length, pr.weights, pr.n_samples,
               pr.average_latency_ms, pr.std_latency_ms, pr.min_latency_ms, pr.p50_latency_ms,
               pr.p90_latency_ms, pr.p95_latency_ms, pr.p99_latency_ms, pr.max_latency_ms,
               pr.ci_low_ms, pr.ci_high_ms, pr.ci_met,
               pr.throughput_items_per_second, pr.throughput_tokens_per_second,
               pr.memory_peak_mb, pr.load_time_ms, pr.cold_latency_ms, pr.threads,
               pr.torch_version, pr.stop_reason, pr.created_at
        FROM performance_results pr
        JOIN models m ON pr.model_id = m.model_id
        JOIN hardware_platforms h ON pr.hardware_id = h.hardware_id""",
    """CREATE VIEW failures_view AS
        SELECT hc.compatibility_id, hc.run_id, m.model_name, m.model_family,
               h.hardware_type, h.platform AS hardware, hc.batch_size, hc.precision,
               hc.is_compatible, hc.error_type, hc.error_message, hc.created_at
        FROM hardware_compatibility hc
        LEFT JOIN models m ON hc.model_id = m.model_id
        LEFT JOIN hardware_platforms h ON hc.hardware_id = h.hardware_id""",
]

# v3: one vocabulary. test_runs holds the run's status under the status object's own
# names (start_time, completion_time, progress, ...), so a stored run reads back as
# the same status the API sends; results keep their timed seconds and wall time; a
# failure row says which status it is (failed, refused, incompatible, skipped) and
# for which input shape; the views show the image size and the new columns.
_V3 = [
    "ALTER TABLE test_runs RENAME COLUMN started_at TO start_time",
    "ALTER TABLE test_runs RENAME COLUMN completed_at TO completion_time",
    "ALTER TABLE test_runs ADD COLUMN progress DOUBLE",
    "ALTER TABLE test_runs ADD COLUMN elapsed_time DOUBLE",
    "ALTER TABLE test_runs ADD COLUMN estimated_remaining_time DOUBLE",
    """UPDATE test_runs SET
           total_models = coalesce(total_models, 0),
           completed_models = coalesce(completed_models, 0),
           total_configs = coalesce(total_configs, 0),
           completed_configs = coalesce(completed_configs, 0),
           progress = CASE WHEN coalesce(total_configs, 0) = 0 THEN 1.0
                           ELSE completed_configs / total_configs END,
           elapsed_time = CASE WHEN start_time IS NULL THEN 0.0
                               ELSE epoch(coalesce(completion_time, start_time) - start_time) END""",
    "ALTER TABLE performance_results ADD COLUMN total_timed_seconds DOUBLE",
    "ALTER TABLE performance_results ADD COLUMN wall_seconds DOUBLE",
    "ALTER TABLE hardware_compatibility ADD COLUMN status VARCHAR",
    "ALTER TABLE hardware_compatibility ADD COLUMN sequence_length INTEGER",
    "ALTER TABLE hardware_compatibility ADD COLUMN image_size INTEGER",
    """UPDATE hardware_compatibility SET status = CASE
           WHEN error_type = 'progressive_stop' THEN 'skipped'
           WHEN error_type = 'incompatible' THEN 'incompatible'
           WHEN error_type = 'insufficient_memory' THEN 'refused'
           ELSE 'failed' END""",
    """CREATE OR REPLACE VIEW results_view AS
        SELECT pr.result_id, pr.run_id, m.model_name, m.model_family, m.model_type, m.modality,
               h.hardware_type, h.platform AS hardware, h.device_name,
               pr.batch_size, pr.precision, pr.sequence_length, pr.image_size, pr.weights, pr.n_samples,
               pr.average_latency_ms, pr.std_latency_ms, pr.min_latency_ms, pr.p50_latency_ms,
               pr.p90_latency_ms, pr.p95_latency_ms, pr.p99_latency_ms, pr.max_latency_ms,
               pr.ci_low_ms, pr.ci_high_ms, pr.ci_met, pr.total_timed_seconds,
               pr.throughput_items_per_second, pr.throughput_tokens_per_second,
               pr.memory_peak_mb, pr.load_time_ms, pr.cold_latency_ms, pr.threads,
               pr.torch_version, pr.stop_reason, pr.wall_seconds, pr.config_key, pr.fingerprint,
               m.parameters_million, pr.created_at
        FROM performance_results pr
        JOIN models m ON pr.model_id = m.model_id
        JOIN hardware_platforms h ON pr.hardware_id = h.hardware_id""",
    """CREATE OR REPLACE VIEW failures_view AS
        SELECT hc.compatibility_id, hc.run_id, m.model_name, m.model_family, m.model_type,
               h.hardware_type, h.platform AS hardware, h.device_name, hc.batch_size, hc.precision,
               hc.sequence_length, hc.image_size, hc.status, hc.is_compatible, hc.error_type,
               hc.error_message, hc.config_key, hc.created_at
        FROM hardware_compatibility hc
        LEFT JOIN models m ON hc.model_id = m.model_id
        LEFT JOIN hardware_platforms h ON hc.hardware_id = h.hardware_id""",
]

# v4: a report that could not be written is recorded on its run.
_V4 = [
    "ALTER TABLE test_runs ADD COLUMN report_error VARCHAR",
    # results_view carries the raw samples, so SQL over the view reaches the distribution
    # (issue 14). Keep samples_ms in any later CREATE OR REPLACE VIEW results_view.
    """CREATE OR REPLACE VIEW results_view AS
        SELECT pr.result_id, pr.run_id, m.model_name, m.model_family, m.model_type, m.modality,
               h.hardware_type, h.platform AS hardware, h.device_name,
               pr.batch_size, pr.precision, pr.sequence_length, pr.image_size, pr.weights, pr.n_samples,
               pr.average_latency_ms, pr.std_latency_ms, pr.min_latency_ms, pr.p50_latency_ms,
               pr.p90_latency_ms, pr.p95_latency_ms, pr.p99_latency_ms, pr.max_latency_ms,
               pr.ci_low_ms, pr.ci_high_ms, pr.ci_met, pr.total_timed_seconds,
               pr.throughput_items_per_second, pr.throughput_tokens_per_second,
               pr.memory_peak_mb, pr.load_time_ms, pr.cold_latency_ms, pr.threads,
               pr.torch_version, pr.stop_reason, pr.wall_seconds, pr.config_key, pr.fingerprint,
               m.parameters_million, pr.created_at, pr.samples_ms
        FROM performance_results pr
        JOIN models m ON pr.model_id = m.model_id
        JOIN hardware_platforms h ON pr.hardware_id = h.hardware_id""",
    # Issue 10: the timing mode and attention implementation of each result, the tail
    # percentiles' order-statistic bounds, load vs inference memory, GPU clocks, temperature
    # and power around the timed loop, and the CPU other processes took meanwhile.
    *(
        f"ALTER TABLE performance_results ADD COLUMN {column}"
        for column in (
            "timing VARCHAR",
            "attn_implementation VARCHAR",
            "p90_ci_low_ms DOUBLE",
            "p90_ci_high_ms DOUBLE",
            "p99_ci_low_ms DOUBLE",
            "p99_ci_high_ms DOUBLE",
            "load_memory_peak_mb DOUBLE",
            "memory_reserved_peak_mb DOUBLE",
            "process_device_memory_mb DOUBLE",
            "calls_per_sample INTEGER",
            "sm_clock_mhz_before DOUBLE",
            "sm_clock_mhz_after DOUBLE",
            "temperature_c_before DOUBLE",
            "temperature_c_after DOUBLE",
            "power_w_before DOUBLE",
            "power_w_after DOUBLE",
            "throttled BOOLEAN",
            "other_cpu_seconds DOUBLE",
            "contended BOOLEAN",
        )
    ),
    """CREATE OR REPLACE VIEW results_view AS
        SELECT pr.result_id, pr.run_id, m.model_name, m.model_family, m.model_type, m.modality,
               h.hardware_type, h.platform AS hardware, h.device_name,
               pr.batch_size, pr.precision, pr.sequence_length, pr.image_size, pr.timing,
               pr.attn_implementation, pr.weights, pr.n_samples,
               pr.average_latency_ms, pr.std_latency_ms, pr.min_latency_ms, pr.p50_latency_ms,
               pr.p90_latency_ms, pr.p95_latency_ms, pr.p99_latency_ms, pr.max_latency_ms,
               pr.ci_low_ms, pr.ci_high_ms, pr.ci_met,
               pr.p90_ci_low_ms, pr.p90_ci_high_ms, pr.p99_ci_low_ms, pr.p99_ci_high_ms,
               pr.total_timed_seconds, pr.calls_per_sample,
               pr.throughput_items_per_second, pr.throughput_tokens_per_second,
               pr.memory_peak_mb, pr.load_memory_peak_mb, pr.memory_reserved_peak_mb,
               pr.process_device_memory_mb, pr.load_time_ms, pr.cold_latency_ms, pr.threads,
               pr.sm_clock_mhz_before, pr.sm_clock_mhz_after, pr.temperature_c_before,
               pr.temperature_c_after, pr.power_w_before, pr.power_w_after, pr.throttled,
               pr.other_cpu_seconds, pr.contended,
               pr.torch_version, pr.stop_reason, pr.wall_seconds, pr.config_key, pr.fingerprint,
               m.parameters_million, pr.created_at, pr.samples_ms
        FROM performance_results pr
        JOIN models m ON pr.model_id = m.model_id
        JOIN hardware_platforms h ON pr.hardware_id = h.hardware_id""",
    # Issue 17: panels saved as custom dashboard tabs (storage.panels). Not on the SQL
    # allowlist: no guarded query reads another panel's SQL.
    "CREATE SEQUENCE IF NOT EXISTS seq_dashboard_panels START 1",
    """CREATE TABLE IF NOT EXISTS dashboard_panels (
        panel_id INTEGER PRIMARY KEY DEFAULT nextval('seq_dashboard_panels'),
        tab VARCHAR NOT NULL,
        title VARCHAR NOT NULL,
        sql VARCHAR NOT NULL,
        chart VARCHAR NOT NULL DEFAULT 'table',
        x VARCHAR,
        y VARCHAR,
        color VARCHAR,
        facet VARCHAR,
        params JSON,
        refresh_s INTEGER,
        position INTEGER NOT NULL DEFAULT 0,
        created_at TIMESTAMP DEFAULT current_timestamp,
        updated_at TIMESTAMP DEFAULT current_timestamp
    )""",
    # Issue 13: where each result and each failure was measured, the Ray node (NULL on the
    # server's own devices) and the host; a config lost with its node says which. Keep node
    # and host in any later CREATE OR REPLACE VIEW of results_view or failures_view.
    "ALTER TABLE performance_results ADD COLUMN node VARCHAR",
    "ALTER TABLE performance_results ADD COLUMN host VARCHAR",
    "ALTER TABLE hardware_compatibility ADD COLUMN node VARCHAR",
    "ALTER TABLE hardware_compatibility ADD COLUMN host VARCHAR",
    """CREATE OR REPLACE VIEW results_view AS
        SELECT pr.result_id, pr.run_id, m.model_name, m.model_family, m.model_type, m.modality,
               h.hardware_type, h.platform AS hardware, h.device_name,
               pr.batch_size, pr.precision, pr.sequence_length, pr.image_size, pr.timing,
               pr.attn_implementation, pr.weights, pr.n_samples,
               pr.average_latency_ms, pr.std_latency_ms, pr.min_latency_ms, pr.p50_latency_ms,
               pr.p90_latency_ms, pr.p95_latency_ms, pr.p99_latency_ms, pr.max_latency_ms,
               pr.ci_low_ms, pr.ci_high_ms, pr.ci_met,
               pr.p90_ci_low_ms, pr.p90_ci_high_ms, pr.p99_ci_low_ms, pr.p99_ci_high_ms,
               pr.total_timed_seconds, pr.calls_per_sample,
               pr.throughput_items_per_second, pr.throughput_tokens_per_second,
               pr.memory_peak_mb, pr.load_memory_peak_mb, pr.memory_reserved_peak_mb,
               pr.process_device_memory_mb, pr.load_time_ms, pr.cold_latency_ms, pr.threads,
               pr.sm_clock_mhz_before, pr.sm_clock_mhz_after, pr.temperature_c_before,
               pr.temperature_c_after, pr.power_w_before, pr.power_w_after, pr.throttled,
               pr.other_cpu_seconds, pr.contended,
               pr.torch_version, pr.stop_reason, pr.wall_seconds, pr.config_key, pr.fingerprint,
               m.parameters_million, pr.created_at, pr.samples_ms, pr.node, pr.host
        FROM performance_results pr
        JOIN models m ON pr.model_id = m.model_id
        JOIN hardware_platforms h ON pr.hardware_id = h.hardware_id""",
    """CREATE OR REPLACE VIEW failures_view AS
        SELECT hc.compatibility_id, hc.run_id, m.model_name, m.model_family, m.model_type,
               h.hardware_type, h.platform AS hardware, h.device_name, hc.batch_size, hc.precision,
               hc.sequence_length, hc.image_size, hc.status, hc.is_compatible, hc.error_type,
               hc.error_message, hc.config_key, hc.created_at, hc.node, hc.host
        FROM hardware_compatibility hc
        LEFT JOIN models m ON hc.model_id = m.model_id
        LEFT JOIN hardware_platforms h ON hc.hardware_id = h.hardware_id""",
    # Issue 12: a result measured in several worker processes (repeats) and the spread of
    # their medians. Read from performance_results (storage.comparisons); not in the views.
    "ALTER TABLE performance_results ADD COLUMN repeats INTEGER",
    "ALTER TABLE performance_results ADD COLUMN between_process_cv DOUBLE",
]

# v5. Issue 11: the scenario (forward | generate) of every result and failure, and a
# generation's figures: time to first token, time per output token (each with p90/p99 and the
# CI of its median), end-to-end latency, decode and prefill tokens/s, and the raw TTFT samples
# and per-token gaps. Rows stored before are forward results. Keep the issue 11 columns, with
# samples_ms, node and host, in any later CREATE OR REPLACE VIEW of results_view or failures_view.
_V5 = [
    *(
        f"ALTER TABLE performance_results ADD COLUMN {column}"
        for column in (
            "scenario VARCHAR DEFAULT 'forward'",
            "new_tokens INTEGER",
            "ttft_ms DOUBLE",
            "ttft_p90_ms DOUBLE",
            "ttft_p99_ms DOUBLE",
            "ttft_ci_low_ms DOUBLE",
            "ttft_ci_high_ms DOUBLE",
            "tpot_ms DOUBLE",
            "tpot_p90_ms DOUBLE",
            "tpot_p99_ms DOUBLE",
            "tpot_ci_low_ms DOUBLE",
            "tpot_ci_high_ms DOUBLE",
            "e2e_ms DOUBLE",
            "decode_tokens_per_second DOUBLE",
            "prefill_tokens_per_second DOUBLE",
            "ttft_samples_ms DOUBLE[]",
            "tpot_samples_ms DOUBLE[]",
        )
    ),
    "UPDATE performance_results SET scenario = 'forward' WHERE scenario IS NULL",
    "ALTER TABLE hardware_compatibility ADD COLUMN scenario VARCHAR DEFAULT 'forward'",
    "ALTER TABLE hardware_compatibility ADD COLUMN new_tokens INTEGER",
    "UPDATE hardware_compatibility SET scenario = 'forward' WHERE scenario IS NULL",
    """CREATE OR REPLACE VIEW results_view AS
        SELECT pr.result_id, pr.run_id, m.model_name, m.model_family, m.model_type, m.modality,
               h.hardware_type, h.platform AS hardware, h.device_name,
               pr.batch_size, pr.precision, pr.sequence_length, pr.image_size, pr.timing,
               pr.attn_implementation, pr.weights, pr.n_samples,
               pr.average_latency_ms, pr.std_latency_ms, pr.min_latency_ms, pr.p50_latency_ms,
               pr.p90_latency_ms, pr.p95_latency_ms, pr.p99_latency_ms, pr.max_latency_ms,
               pr.ci_low_ms, pr.ci_high_ms, pr.ci_met,
               pr.p90_ci_low_ms, pr.p90_ci_high_ms, pr.p99_ci_low_ms, pr.p99_ci_high_ms,
               pr.total_timed_seconds, pr.calls_per_sample,
               pr.throughput_items_per_second, pr.throughput_tokens_per_second,
               pr.memory_peak_mb, pr.load_memory_peak_mb, pr.memory_reserved_peak_mb,
               pr.process_device_memory_mb, pr.load_time_ms, pr.cold_latency_ms, pr.threads,
               pr.sm_clock_mhz_before, pr.sm_clock_mhz_after, pr.temperature_c_before,
               pr.temperature_c_after, pr.power_w_before, pr.power_w_after, pr.throttled,
               pr.other_cpu_seconds, pr.contended,
               pr.torch_version, pr.stop_reason, pr.wall_seconds, pr.config_key, pr.fingerprint,
               m.parameters_million, pr.created_at, pr.samples_ms, pr.node, pr.host,
               pr.scenario, pr.new_tokens, pr.ttft_ms, pr.ttft_p90_ms, pr.ttft_p99_ms,
               pr.ttft_ci_low_ms, pr.ttft_ci_high_ms, pr.tpot_ms, pr.tpot_p90_ms, pr.tpot_p99_ms,
               pr.tpot_ci_low_ms, pr.tpot_ci_high_ms, pr.e2e_ms, pr.decode_tokens_per_second,
               pr.prefill_tokens_per_second, pr.ttft_samples_ms, pr.tpot_samples_ms
        FROM performance_results pr
        JOIN models m ON pr.model_id = m.model_id
        JOIN hardware_platforms h ON pr.hardware_id = h.hardware_id""",
    """CREATE OR REPLACE VIEW failures_view AS
        SELECT hc.compatibility_id, hc.run_id, m.model_name, m.model_family, m.model_type,
               h.hardware_type, h.platform AS hardware, h.device_name, hc.batch_size, hc.precision,
               hc.sequence_length, hc.image_size, hc.status, hc.is_compatible, hc.error_type,
               hc.error_message, hc.config_key, hc.created_at, hc.node, hc.host,
               hc.scenario, hc.new_tokens
        FROM hardware_compatibility hc
        LEFT JOIN models m ON hc.model_id = m.model_id
        LEFT JOIN hardware_platforms h ON hc.hardware_id = h.hardware_id""",
]

# v6. The throughput's own 95% CI (engine.stats.throughput_ci, from the mean latency's): the
# median's relative CI said nothing of a mean-based rate. Rows stored before read NULL: no CI.
# results_view now shows repeats and between_process_cv too, so the API's rows, --json and
# results.json carry them, as the comparisons always read them. Keep these, with the issue 11
# columns, samples_ms, node and host, in any later CREATE OR REPLACE VIEW of results_view.
_V6 = [
    "ALTER TABLE performance_results ADD COLUMN throughput_ci_low_items_per_second DOUBLE",
    "ALTER TABLE performance_results ADD COLUMN throughput_ci_high_items_per_second DOUBLE",
    """CREATE OR REPLACE VIEW results_view AS
        SELECT pr.result_id, pr.run_id, m.model_name, m.model_family, m.model_type, m.modality,
               h.hardware_type, h.platform AS hardware, h.device_name,
               pr.batch_size, pr.precision, pr.sequence_length, pr.image_size, pr.timing,
               pr.attn_implementation, pr.weights, pr.n_samples,
               pr.average_latency_ms, pr.std_latency_ms, pr.min_latency_ms, pr.p50_latency_ms,
               pr.p90_latency_ms, pr.p95_latency_ms, pr.p99_latency_ms, pr.max_latency_ms,
               pr.ci_low_ms, pr.ci_high_ms, pr.ci_met,
               pr.p90_ci_low_ms, pr.p90_ci_high_ms, pr.p99_ci_low_ms, pr.p99_ci_high_ms,
               pr.total_timed_seconds, pr.calls_per_sample,
               pr.throughput_items_per_second, pr.throughput_ci_low_items_per_second,
               pr.throughput_ci_high_items_per_second, pr.throughput_tokens_per_second,
               pr.memory_peak_mb, pr.load_memory_peak_mb, pr.memory_reserved_peak_mb,
               pr.process_device_memory_mb, pr.load_time_ms, pr.cold_latency_ms, pr.threads,
               pr.sm_clock_mhz_before, pr.sm_clock_mhz_after, pr.temperature_c_before,
               pr.temperature_c_after, pr.power_w_before, pr.power_w_after, pr.throttled,
               pr.other_cpu_seconds, pr.contended,
               pr.torch_version, pr.stop_reason, pr.wall_seconds, pr.config_key, pr.fingerprint,
               m.parameters_million, pr.created_at, pr.samples_ms, pr.node, pr.host,
               pr.scenario, pr.new_tokens, pr.ttft_ms, pr.ttft_p90_ms, pr.ttft_p99_ms,
               pr.ttft_ci_low_ms, pr.ttft_ci_high_ms, pr.tpot_ms, pr.tpot_p90_ms, pr.tpot_p99_ms,
               pr.tpot_ci_low_ms, pr.tpot_ci_high_ms, pr.e2e_ms, pr.decode_tokens_per_second,
               pr.prefill_tokens_per_second, pr.ttft_samples_ms, pr.tpot_samples_ms,
               pr.repeats, pr.between_process_cv
        FROM performance_results pr
        JOIN models m ON pr.model_id = m.model_id
        JOIN hardware_platforms h ON pr.hardware_id = h.hardware_id""",
]

MIGRATIONS: list[list[str]] = [_V1, _V2, _V3, _V4, _V5, _V6]
LATEST_VERSION = len(MIGRATIONS)
