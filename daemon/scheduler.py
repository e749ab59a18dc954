"""APScheduler 3 jobs (the nightly retrain), with the job store in the catalogue database.

The job store is the catalogue's own database, so a run that fell due while the machine was
off is still recorded there at the next start and is caught up exactly once
(``coalesce=True``: three missed nights give one run, not three; ``max_instances=1``: a
slow run never overlaps the next). Jobs are stored as JSON, never pickled: the only job is
a cron trigger calling a registered callable by name.

A job calls :func:`run_registered` with a name; the running process registers the callable
for that name (the retrain job needs the process's engine and config, which cannot be
stored in the database).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.util import datetime_to_utc_timestamp
from sqlalchemy import Engine, MetaData, Table, inspect, select
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)

JOB_TABLE = "apscheduler_jobs"
RETRAIN_JOB = "retrain"
RUNNER = "daemon.scheduler:run_registered"

_registry: dict[str, Callable[[], Any]] = {}


def register(name: str, func: Callable[[], Any]) -> None:
    """Make ``func`` what the stored job ``name`` calls in this process."""
    _registry[name] = func


def run_registered(name: str) -> None:
    """The stored jobs' entry point: call what this process registered for ``name``."""
    func = _registry.get(name)
    if func is None:
        log.warning("job %s fell due but nothing is registered for it in this process", name)
        return
    func()


def _trigger_state(trigger: CronTrigger) -> dict[str, Any]:
    return {
        "fields": {f.name: str(f) for f in trigger.fields},
        "timezone": getattr(trigger.timezone, "key", None) or str(trigger.timezone),
        "jitter": trigger.jitter,
    }


def _trigger_from_state(state: dict[str, Any]) -> CronTrigger:
    return CronTrigger(**state["fields"], timezone=state["timezone"], jitter=state["jitter"])


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class JsonJobStore(SQLAlchemyJobStore):
    """SQLAlchemyJobStore with JSON job state instead of pickle (cron triggers only)."""

    def _dump(self, job: Job) -> bytes:
        state = job.__getstate__()
        if not isinstance(state["trigger"], CronTrigger):
            raise ValueError(f"job {job.id}: only cron triggers can be stored")
        state["trigger"] = _trigger_state(state["trigger"])
        state["args"] = list(state["args"])
        state["next_run_time"] = _when(state["next_run_time"])
        return json.dumps(state).encode()

    def add_job(self, job: Job) -> None:
        self._write(job, insert=True)

    def update_job(self, job: Job) -> None:
        self._write(job, insert=False)

    def _write(self, job: Job, insert: bool) -> None:
        from apscheduler.jobstores.base import ConflictingIdError, JobLookupError
        from sqlalchemy.exc import IntegrityError

        values = {
            "next_run_time": datetime_to_utc_timestamp(job.next_run_time),
            "job_state": self._dump(job),
        }
        with self.engine.begin() as connection:
            if insert:
                try:
                    connection.execute(self.jobs_t.insert().values(id=job.id, **values))
                except IntegrityError as e:
                    raise ConflictingIdError(job.id) from e
                return
            stmt = self.jobs_t.update().values(**values).where(self.jobs_t.c.id == job.id)
            if connection.execute(stmt).rowcount == 0:
                raise JobLookupError(job.id)

    def _reconstitute_job(self, job_state: bytes) -> Job:
        state = json.loads(job_state)
        state["trigger"] = _trigger_from_state(state["trigger"])
        state["args"] = tuple(state["args"])
        when = state["next_run_time"]
        state["next_run_time"] = datetime.fromisoformat(when) if when else None
        state["jobstore"] = self
        job = Job.__new__(Job)
        job.__setstate__(state)
        job._scheduler = self._scheduler
        job._jobstore_alias = self._alias
        return job


_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab: 0 (and 7) = Sunday


def _cron_days(field: str) -> str:
    """A crontab day-of-week field in APScheduler's terms. APScheduler 3 numbers days from
    Monday = 0, crontab from Sunday = 0, so numeric days are spelt out as names."""
    out: list[str] = []
    for token in field.split(","):
        spec, _, step_text = token.partition("/")
        if any(c.isalpha() for c in spec) or (spec == "*" and not step_text):
            out.append(token)
            continue
        step = int(step_text) if step_text else 1
        low, _, high = (spec if spec != "*" else "0-6").partition("-")
        first, last = int(low), int(high or low)
        if not (0 <= first <= 7 and 0 <= last <= 7 and step >= 1):
            raise ValueError(f"day of week {token!r} is not within 0-7")
        out += [_CRON_DAYS[d % 7] for d in range(first, last + 1, step)]
    return ",".join(dict.fromkeys(out))


def cron_trigger(schedule: str) -> CronTrigger:
    """The config's 5-field crontab line (minute hour day month day-of-week, with
    crontab's Sunday = 0) in local time. Raises ValueError saying what is wrong."""
    fields = schedule.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (minute hour day month day-of-week), got "
                         f"{len(fields)}")
    minute, hour, day, month, days = fields
    return CronTrigger(minute=minute, hour=hour, day=day, month=month,
                       day_of_week=_cron_days(days))


def start_scheduler(
    db_url: str, schedule: str, job_name: str = RETRAIN_JOB
) -> BackgroundScheduler:
    """Start a scheduler whose ``job_name`` job runs on ``schedule``; a run missed while no
    daemon ran is kept (not recomputed from now) so it is caught up once at this start."""
    from storage.db import create

    scheduler = BackgroundScheduler(
        jobstores={"default": JsonJobStore(engine=create(db_url), tablename=JOB_TABLE)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
    )
    scheduler.start(paused=True)
    trigger = cron_trigger(schedule)
    job = scheduler.get_job(job_name)
    if job is None:
        scheduler.add_job(RUNNER, trigger, args=[job_name], id=job_name, name=job_name)
    elif str(job.trigger) != str(trigger):
        due = job.next_run_time
        if due is not None and due <= datetime.now(due.tzinfo):
            job.modify(trigger=trigger)  # keep the missed run, then follow the new schedule
        else:
            scheduler.reschedule_job(job_name, trigger=trigger)
        log.info("schedule of %s changed to %r", job_name, schedule)
    scheduler.resume()
    nxt = scheduler.get_job(job_name)
    log.info("%s scheduled (%s); next run %s", job_name, schedule, nxt and nxt.next_run_time)
    return scheduler


def next_run(engine: Engine, job_name: str = RETRAIN_JOB) -> datetime | None:
    """When ``job_name`` runs next, read from the job store without starting a scheduler
    (for ``genred status``); None when it was never scheduled."""
    from apscheduler.util import utc_timestamp_to_datetime

    try:
        if not inspect(engine).has_table(JOB_TABLE):
            return None
        table = Table(JOB_TABLE, MetaData(), autoload_with=engine)
        with engine.connect() as connection:
            value = connection.execute(
                select(table.c.next_run_time).where(table.c.id == job_name)
            ).scalar()
    except SQLAlchemyError as e:
        log.warning("cannot read the job store: %s", e)
        return None
    if value is None:
        return None
    when: datetime = utc_timestamp_to_datetime(float(value))
    return when

