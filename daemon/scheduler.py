"""APScheduler 3 jobs (the nightly retrain), with the job store in the catalogue database.

The job store is the catalogue's own database, so a run that fell due while the machine was
off is still recorded there at the next start and is caught up exactly once
(``coalesce=True``: three missed nights give one run, not three; ``max_instances=1``: a
slow run never overlaps the next). A row holds only schedule state (id, cron trigger, next
run time) as JSON, never a pickle and never the name of code: what each job id runs is
fixed in code (:class:`KnownJob`), so an edited row cannot make genred run anything else.

A job calls :func:`run_registered` with a name; the running process registers the callable
for that name (the retrain job needs the process's engine and config, which cannot be
stored in the database).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.util import datetime_to_utc_timestamp
from sqlalchemy import Connection, Engine, MetaData, Table, and_, inspect, select
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


_CRON_FIELDS = frozenset(CronTrigger.FIELD_NAMES)


def _trigger_from_state(state: Any) -> CronTrigger:
    """A cron trigger from stored state: plain field strings, a zone name, a jitter."""
    if not isinstance(state, dict) or not isinstance(state.get("fields"), dict):
        raise ValueError("no cron fields")
    fields = state["fields"]
    if not set(fields) <= _CRON_FIELDS or not all(isinstance(v, str) for v in fields.values()):
        raise ValueError(f"unknown cron fields {sorted(fields)}")
    zone, jitter = state.get("timezone"), state.get("jitter")
    if not isinstance(zone, str) or not (jitter is None or isinstance(jitter, int)):
        raise ValueError("bad timezone or jitter")
    return CronTrigger(**fields, timezone=zone, jitter=jitter)


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class KnownJob:
    """What a job id runs, fixed in code: never read from the catalogue."""

    func: str
    args: tuple[Any, ...]


# Keys of a job's state that name code or how it runs: set from KnownJob and the job
# defaults, whatever a row says.
_CODE_KEYS = ("func", "args", "kwargs", "executor")


class JsonJobStore(SQLAlchemyJobStore):
    """SQLAlchemyJobStore holding schedule state only, as JSON (never a pickle).

    A row holds a job id, its cron trigger and its next run time. What a job runs comes
    from ``known`` (id -> :class:`KnownJob`, registered by code at start): a row for an
    unknown id is deleted, and a row that names other code (``"func": "os:system"``, put
    there by hand or by anyone who can write to the catalogue) is logged, ignored, and
    rewritten. Nothing read from the catalogue is ever imported or called."""

    def __init__(self, known: Mapping[str, KnownJob], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.known = dict(known)

    def _dump(self, job: Job) -> bytes:
        if not isinstance(job.trigger, CronTrigger):
            raise ValueError(f"job {job.id}: only cron triggers can be stored")
        return json.dumps({"version": 1, "id": job.id, "trigger": _trigger_state(job.trigger),
                           "next_run_time": _when(job.next_run_time)}).encode()

    def add_job(self, job: Job) -> None:
        self._write(job, insert=True)

    def update_job(self, job: Job) -> None:
        self._write(job, insert=False)

    def _write(self, job: Job, insert: bool) -> None:
        from apscheduler.jobstores.base import ConflictingIdError, JobLookupError
        from sqlalchemy.exc import IntegrityError

        if job.id not in self.known:
            raise ValueError(f"job {job.id!r} is not one genred registers")
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

    def lookup_job(self, job_id: str) -> Job | None:
        jobs = self._get_jobs(self.jobs_t.c.id == job_id)
        return jobs[0] if jobs else None

    def _get_jobs(self, *conditions: Any) -> list[Job]:
        query = select(self.jobs_t.c.id, self.jobs_t.c.job_state).order_by(
            self.jobs_t.c.next_run_time)
        if conditions:
            query = query.where(and_(*conditions))
        jobs: list[Job] = []
        with self.engine.begin() as connection:
            for row in connection.execute(query).all():
                job = self._restore(connection, row.id, row.job_state)
                if job is not None:
                    jobs.append(job)
        return jobs

    def _restore(self, connection: Connection, job_id: str, raw: bytes) -> Job | None:
        """The job ``job_id`` built from code, with the row's schedule; None (and the row
        deleted) when genred has no such job or the row is unreadable."""
        known = self.known.get(job_id)
        try:
            if known is None:
                raise ValueError("genred registers no job of that id")
            state = json.loads(raw)
            if not isinstance(state, dict):
                raise ValueError("not a JSON object")
            trigger = _trigger_from_state(state.get("trigger"))
            when = state.get("next_run_time")
            next_run = datetime.fromisoformat(when) if isinstance(when, str) else None
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as e:
            log.warning("%s row %r ignored and deleted (%s); genred schedules its own jobs "
                        "again from its config", self.jobs_t.name, job_id, e)
            connection.execute(self.jobs_t.delete().where(self.jobs_t.c.id == job_id))
            return None
        code = {"func": known.func, "args": list(known.args), "kwargs": {},
                "executor": "default"}
        named = {k: state[k] for k in _CODE_KEYS if k in state and state[k] != code[k]}
        job = Job.__new__(Job)
        job.__setstate__({
            "version": 1, "id": job_id, "func": known.func, "trigger": trigger,
            "executor": "default", "args": known.args, "kwargs": {}, "name": job_id,
            "misfire_grace_time": None, "coalesce": True, "max_instances": 1,
            "next_run_time": next_run,
        })
        job._scheduler = self._scheduler
        job._jobstore_alias = self._alias
        if named or set(state) - {"version", "id", "trigger", "next_run_time"}:
            if named:
                log.warning("%s row %r names code to run (%s): ignored; genred runs only "
                            "its own job %s. Someone or something edited the catalogue: "
                            "check who can write to it. The row is rewritten.",
                            self.jobs_t.name, job_id,
                            ", ".join(f"{k}={v!r}" for k, v in named.items()), known.func)
            connection.execute(self.jobs_t.update().values(job_state=self._dump(job))
                               .where(self.jobs_t.c.id == job_id))
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
    db_url: str, schedule: str, job_name: str = RETRAIN_JOB, busy_timeout: float | None = None
) -> BackgroundScheduler:
    """Start a scheduler whose ``job_name`` job runs on ``schedule``; a run missed while no
    daemon ran is kept (not recomputed from now) so it is caught up once at this start.
    The job calls :func:`run_registered` with its name (see :class:`JsonJobStore`)."""
    from storage.db import create

    store = JsonJobStore({job_name: KnownJob(RUNNER, (job_name,))},
                         engine=create(db_url, busy_timeout), tablename=JOB_TABLE)
    scheduler = BackgroundScheduler(
        jobstores={"default": store},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
    )
    scheduler.start(paused=True)
    trigger = cron_trigger(schedule)
    job = scheduler.get_job(job_name)
    if job is None:
        scheduler.add_job(RUNNER, trigger, args=[job_name], id=job_name, name=job_name)
    else:
        apply_schedule(scheduler, schedule, job_name)
    scheduler.resume()
    nxt = scheduler.get_job(job_name)
    log.info("%s scheduled (%s); next run %s", job_name, schedule, nxt and nxt.next_run_time)
    return scheduler


def apply_schedule(scheduler: BackgroundScheduler, schedule: str,
                   job_name: str = RETRAIN_JOB) -> bool:
    """Make ``job_name`` follow ``schedule`` (at start, or when the config is reloaded); a
    run already due is kept. False when the schedule was already that."""
    trigger = cron_trigger(schedule)
    job = scheduler.get_job(job_name)
    if job is None or str(job.trigger) == str(trigger):
        return False
    due = job.next_run_time
    if due is not None and due <= datetime.now(due.tzinfo):
        job.modify(trigger=trigger)  # keep the missed run, then follow the new schedule
    else:
        scheduler.reschedule_job(job_name, trigger=trigger)
    nxt = scheduler.get_job(job_name)
    log.info("schedule of %s changed to %r; next run %s", job_name, schedule,
             nxt and nxt.next_run_time)
    return True


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

