"""The daemon writes genre tags for new predictions, whichever host classified them.

`genred worker` hosts only classify; the files' tags are written by `genred run` (the
host that watches the library), right after each batch: every current prediction newer
than the last one it looked at gets the tag policy applied (``storage.tagging``). The
position is kept in the catalogue, so a restart neither skips nor repeats; a first start
begins at the newest prediction (tags are written for what is classified from then on,
as before).

Prediction ids are handed out at insert, but transactions on several hosts commit in any
order: an id below the position can become visible after the pass moved on. So each pass
looks again at the last ``LOOKBACK`` ids, skipping those it handled.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from daemon.config import Config

if TYPE_CHECKING:
    from storage.tagging import TagPolicy

log = logging.getLogger(__name__)

POSITION_KEY = "tags.after_prediction"
LOOKBACK = 200


class TagPass:
    def __init__(self, cfg: Config, engine: Engine) -> None:
        self.engine = engine
        self.policy = _policy(cfg)
        self._after: int | None = None
        self._handled: set[int] = set()  # ids in the look-back window already handled

    def reconfigure(self, cfg: Config) -> None:
        """A reloaded config's tag policy, from the next pass on (tags turned on by a
        reload start where a start with them on would: the stored position, else now)."""
        self.policy = _policy(cfg)

    def start(self) -> None:
        """Before the daemon classifies anything: where the passes begin."""
        from storage.catalogue import get_state, set_state
        from storage.tagging import newest_prediction_id

        if self.policy is None:
            return
        stored = get_state(self.engine, POSITION_KEY)
        self._after = int(stored) if stored and stored.isdigit() else \
            newest_prediction_id(self.engine)
        set_state(self.engine, POSITION_KEY, str(self._after))
        from storage.tagging import recorded_after

        window = recorded_after(self.engine, max(0, self._after - LOOKBACK), LOOKBACK)
        self._handled = {i for i, _ in window if i <= self._after}  # before this start

    def run(self) -> int:
        """Apply the tag policy to the predictions recorded since the last pass; returns
        how many files it looked at."""
        from storage.catalogue import set_state
        from storage.tagging import WRITTEN, recorded_after, write_track

        if self.policy is None:
            return 0
        if self._after is None:
            self.start()
        assert self._after is not None
        seen = 0
        since = max(0, self._after - LOOKBACK)
        while rows := recorded_after(self.engine, since):
            for prediction_id, path in rows:
                since = prediction_id
                if prediction_id in self._handled:
                    continue
                outcome = write_track(self.engine, path, self.policy)
                log.log(logging.INFO if outcome.action == WRITTEN else logging.DEBUG,
                        "tags: %s", outcome.line())
                self._handled.add(prediction_id)
                seen += 1
        if since > self._after:
            self._after = since
            set_state(self.engine, POSITION_KEY, str(since))
        self._handled = {i for i in self._handled if i > self._after - LOOKBACK}
        return seen


def _policy(cfg: Config) -> TagPolicy | None:
    from storage.tagging import policy_from

    return policy_from(cfg) if cfg.write_tags else None
