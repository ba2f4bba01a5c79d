"""The code and environment behind the report's scenarios: per-row labels and the warning
shown when the scenarios of one build were made from different code or environments.

Pure: rows in (as :func:`ductaflow.report.rows.scenario_row` makes them), plain data out.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ductaflow.store.result import FlowResult

#: Digits of an environment hash shown in the report (the full hash is in the title).
ENV_DIGITS = 8


def row_fields(records: list[FlowResult | None]) -> dict[str, str]:
    """A scenario's code and environment labels, from the first of ``records`` with provenance
    (its build record, else its flows'); empty strings when none has any."""
    prov = next((r.provenance for r in records if r is not None and r.provenance is not None), None)
    if prov is None:
        return {"commit": "", "commit_title": "", "code": "", "code_label": "", "env": ""}
    git = prov.git
    return {
        "commit": prov.commit_text,
        "code_label": f"{prov.commit_text} (diff {git.diff_hash[:6]})" if git and git.diff_hash else prov.commit_text,
        "commit_title": prov.code_line,
        "code": repr(prov.code_state),
        "env": prov.env_hash or "",
    }


def section_fields(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What a build section shows of its rows' provenance: the distinct code states and
    environments (most common first, with counts) and whether each is mixed."""
    codes: Counter[tuple[str, str]] = Counter((r["code"], r["code_label"]) for r in rows if r.get("code"))
    envs: Counter[str] = Counter(r["env"] for r in rows if r.get("env"))
    return {
        "codes": [{"label": label, "count": n} for (_, label), n in codes.most_common()],
        "envs": [{"env": env[:ENV_DIGITS], "hash": env, "count": n} for env, n in envs.most_common()],
        "mixed_code": len(codes) > 1,
        "mixed_env": len(envs) > 1,
    }


def warnings(sections: list[dict[str, Any]]) -> list[str]:
    """One line per build whose scenarios shown ran on different code or environments."""
    out = []
    for s in sections:
        parts = []
        if s.get("mixed_code"):
            shown = ", ".join(f"{c['label']} ×{c['count']}" for c in s["codes"][:6])
            parts.append(f"{len(s['codes'])} different code states ({shown}; * = uncommitted changes)")
        if s.get("mixed_env"):
            shown = ", ".join(f"{e['env']} ×{e['count']}" for e in s["envs"][:6])
            parts.append(f"{len(s['envs'])} different environments ({shown})")
        if parts:
            out.append(f"{s['build']}: the scenarios shown ran on " + " and ".join(parts))
    return out
