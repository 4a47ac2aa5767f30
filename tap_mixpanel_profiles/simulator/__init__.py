"""A local look-alike of Mixpanel's Query and Export APIs, for the demo, tests and benchmarks.

Standard library only, loopback only, and independent of the tap: nothing here imports the tap,
and the tap never imports this package. Modules:

* :mod:`.server` -- the HTTP server and :class:`MixpanelSimulator`;
* :mod:`.cli` -- the command line (``python -m``), its flags generated from the config;
* :mod:`.config` -- :class:`SimulatorConfig`, every knob with its help text (the CLI's source);
* :mod:`.data` -- profile records (each with its JSON), data sets and timestamps;
* :mod:`.users` -- the user profiles: deterministic, deliberately awkward data;
* :mod:`.engage` -- Query API semantics (auth, limits, sessions, paging, faults): Engage and the
  cohorts list;
* :mod:`.request` -- a request's credentials and parameters, checked (401/403/400);
* :mod:`.groups` -- group profiles: the ``data_groups`` spec and their data sets;
* :mod:`.cohorts` -- cohorts: the ``cohorts`` spec, membership and the cohorts list;
* :mod:`.replies` -- replies, and Engage pages written in batches;
* :mod:`.export` -- the raw Export API (streamed JSON lines);
* :mod:`.limits` -- rate limits, fault dice and the counters behind ``GET /_stats``;
* :mod:`.where` -- the evaluator of Mixpanel ``where`` expressions.

``python -m tap_mixpanel_profiles.simulator --help`` lists the command-line flags.
"""

from __future__ import annotations

from .cli import main
from .config import SimulatorConfig
from .server import COHORTS_LIST_PATHS, ENGAGE_PATHS, MixpanelSimulator

__all__ = ["COHORTS_LIST_PATHS", "ENGAGE_PATHS", "MixpanelSimulator", "SimulatorConfig", "main"]
