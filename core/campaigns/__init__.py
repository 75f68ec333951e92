"""Campaigns (broadcast): a planned message to a segment, each customer on their channel of choice.

* :mod:`.model` — campaign files (``rules/campaigns/*.yaml``): checked with ``file:line:col``
  errors like rule files, the audience in the rules' condition language;
* :mod:`.plan` — who would receive what on which channel and why the others do not (the one
  contact policy decides); the dry run;
* :mod:`.runs` — a run: the audience snapshot, one outbox intent per recipient written through
  the one writer in large groups, pause/resume/cancel, idempotent resume after a crash;
* :mod:`.report` — responses attributed to the campaign, the funnel per channel and the uplift
  against the holdout;
* :mod:`.plugin` — the scheduler in the hub and the ``shopkeeper campaign`` commands.
"""
