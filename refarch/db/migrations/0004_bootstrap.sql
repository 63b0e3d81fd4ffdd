-- Bootstrap bookkeeping: a run is split into id ranges; each range is claimed by one worker
-- (FOR UPDATE SKIP LOCKED) and marked done only after SQS accepted all of its rows.
CREATE TABLE bootstrap_runs (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    status      text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'complete', 'failed')),
    range_size  integer     NOT NULL CHECK (range_size > 0),
    total_rows  bigint      NOT NULL,
    enqueued    bigint      NOT NULL DEFAULT 0,
    skipped     bigint      NOT NULL DEFAULT 0,
    error       text,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
-- At most one run in progress: a re-run resumes it instead of starting over.
CREATE UNIQUE INDEX bootstrap_one_running_idx ON bootstrap_runs ((true)) WHERE status = 'running';

CREATE TABLE bootstrap_ranges (
    run_id     bigint      NOT NULL REFERENCES bootstrap_runs (id) ON DELETE CASCADE,
    range_no   integer     NOT NULL,
    first_id   bigint      NOT NULL,
    last_id    bigint      NOT NULL,
    status     text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done')),
    enqueued   integer     NOT NULL DEFAULT 0,
    skipped    integer     NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, range_no)
);
