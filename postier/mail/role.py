"""The role of the listener a message came in on, which decides intake's policy.

In `mail` because the SMTP adapter picks it, intake and the filter pipelines act on
it, and the local submission path (`postier send`) names it; the filters may not
import `smtp`. A `StrEnum`: its value is what logs, metrics and the ``filters.mx``
/ ``filters.submission`` settings call it.
"""

from __future__ import annotations

import enum


class IntakeRole(enum.StrEnum):
    #: port 25: mail for local recipients only, no AUTH, the full filter pipeline
    MX = "mx"
    #: ports 587 and 465: AUTH first, the user's own sender addresses, relaying allowed
    SUBMISSION = "submission"
