"""The verdict of the relevance benchmark: does the candidate beat each baseline, by which rule?

``verdict`` reads the candidate-minus-baseline rows of `benches.relevance.report.compare`;
``targets_met`` applies it to every protocol baseline; ``verdict_lines`` states both in the
report's words (the seeds of each learned method are condensed by `benches.relevance.seeds`).
"""

from __future__ import annotations

RULES = ("wins_j2", "wins_j2c", "wins")


def is_protocol_baseline(method: str) -> bool:
    """The protocol's baselines and their seeds; world-model methods (``wm_*``) are candidates."""
    return not method.startswith("wm_")


def verdict(rows: list[dict], budget: str = "0.25") -> dict[str, dict]:
    """Per baseline at ``budget``: is each CI of the difference above zero, and which rule is met?

    ``wins_j2`` is issue 6's target (J4, and J2 retention on all and on the long-range subset) under
    the judge LM alone, ``wins_j2c`` the same under the judge with its unigram cache (J2c); ``wins``
    is the protocol's rule (J4 and at least one of J2, J2c, J1b, each on all and long-range).
    """
    out: dict[str, dict] = {}
    for r in rows:
        if r["budget"] != budget or r["track"] not in ("primary", "j4"):
            continue
        entry = out.setdefault(r["baseline"], {})
        if r["judge"] == "J4":
            entry["j4"] = r["lo"] > 0
        elif r["judge"] in ("J2", "J2c"):
            entry[f"{r['judge'].lower()}_{r['subset']}"] = r["retention"]["lo"] > 0
        elif r["judge"] == "J1b":
            entry[f"j1b_{r['subset']}"] = r["lo"] > 0
    for entry in out.values():
        both = {
            j: entry.get(f"{j}_all", False) and entry.get(f"{j}_long_range", False)
            for j in ("j2", "j2c", "j1b")
        }
        entry["wins_j2"] = entry.get("j4", False) and both["j2"]
        entry["wins_j2c"] = entry.get("j4", False) and both["j2c"]
        entry["wins"] = entry.get("j4", False) and (both["j2"] or both["j2c"] or both["j1b"])
    return out


def ceiling(oracle_rows: list[dict], budget: str = "0.25") -> dict[str, dict]:
    """The room the J2 judges leave at ``budget``: the future-lexical oracle minus each other method.

    ``oracle_rows``: `benches.relevance.report.compare` rows with the oracle as candidate. Returns
    ``{judge_subset: {method: {mean, lo, hi}}}`` of J2 / J2c retention differences (primary track).
    A method the oracle itself does not beat with a CI above zero is out of reach, on that judge and
    subset, for any method that does no better than the oracle."""
    out: dict[str, dict] = {}
    for r in oracle_rows:
        if r["budget"] == budget and r["track"] == "primary" and r["judge"] in ("J2", "J2c"):
            out.setdefault(f"{r['judge'].lower()}_{r['subset']}", {})[r["baseline"]] = r["retention"]
    return out


def ceiling_lines(s: dict) -> list[str]:
    """Where the oracle's own CI over a method reaches zero (see `ceiling`), in the report's words."""
    room = s.get("ceiling_at_0.25")
    if not room:
        return []
    out = []
    for key, rows in room.items():
        judge, subset = key.split("_", 1)
        unresolved = [
            f"`{m}` {d['mean']:+.3f} [{d['lo']:.3f}, {d['hi']:.3f}]" for m, d in rows.items() if d["lo"] <= 0
        ]
        if unresolved:
            out.append(
                f"- {judge.upper().replace('C', 'c')} retention at 0.25, {subset.replace('_', '-')}: the "
                f"future-lexical oracle itself is not above {', '.join(unresolved)} "
                "(oracle minus method, 95% CI)."
            )
    if out:
        out.insert(0, "The room the judges leave (the oracle against every other method, primary track):")
    return out


def targets_met(v: dict[str, dict]) -> dict[str, list[str]] | None:
    """Per rule of `verdict` (``wins_j2``, ``wins_j2c``, ``wins``), the protocol baselines it is not met
    against (world-model methods are not baselines); None when there is no protocol baseline."""
    protocol = {b: x for b, x in v.items() if is_protocol_baseline(b)}
    if not protocol:
        return None
    return {rule: [b for b, x in protocol.items() if not x.get(rule, False)] for rule in RULES}


def narrowest(rows: list[dict], budget: str = "0.25") -> dict | None:
    """Of the rows issue 6's target reads (J4; J2 retention, primary track) against protocol
    baselines at ``budget``, the one whose CI's lower bound is closest to zero (or furthest below)."""
    cells = [
        (r["baseline"], r["judge"], r["subset"], r["retention"] if r["judge"] == "J2" else r)
        for r in rows
        if r["budget"] == budget
        and is_protocol_baseline(r["baseline"])
        and (r["judge"] == "J4" or (r["judge"] == "J2" and r["track"] == "primary"))
    ]
    if not cells:
        return None
    base, judge, subset, cell = min(cells, key=lambda c: c[3]["lo"])
    return {"baseline": base, "judge": judge, "subset": subset, **{k: cell[k] for k in ("mean", "lo", "hi")}}


def edge_note(lo: float) -> str:
    """How a CI's lower bound reads: below zero, barely above it, or clear."""
    if lo <= 0:
        return " (not above zero)."
    return " (within 0.01 of zero: its sign can change with the bootstrap draw)." if lo < 0.01 else "."


def verdict_lines(s: dict) -> list[str]:
    """Plain statements of both targets (see `verdict`): J4 + J2 (issue 6), J4 + (J2 or J1b) (protocol)."""
    cand = s["candidate"]
    out = []
    is_wm = not is_protocol_baseline(cand)
    if not is_wm:
        out.append(
            f"No world-model method ran in this report (no trained DialogueWorldModel was loaded); `{cand}` "
            "stands in as the candidate so the statistics are exercised. The target of issue 6 is not tested."
        )
    keys = ("j4", "j2_all", "j2_long_range", "j2c_all", "j2c_long_range", "j1b_all", "j1b_long_range")
    missed = targets_met(s["verdict_at_0.25"])
    if missed is not None and is_wm:
        met = {rule: "MET" if not missed[rule] else "NOT met" for rule in RULES}
        protocol = [b for b in s["verdict_at_0.25"] if is_protocol_baseline(b)]
        out.append(
            f"Against every protocol baseline and each seed (and seed mean) of the learned ones "
            f"({', '.join(protocol)}) at 0.25: issue 6's J4 + J2 target {met['wins_j2']} with the judge LM "
            f"alone and {met['wins_j2c']} with its cache (J2c); the protocol's J4 + (J2, J2c or J1b) rule "
            f"{met['wins']}."
        )
    tight = narrowest(s.get("comparisons", []))
    if tight is not None and is_wm:
        out.append(
            f"Narrowest margin of the J4 + J2 target: `{tight['baseline']}` on {tight['judge']} "
            f"({tight['subset'].replace('_', '-')}), {tight['mean']:+.3f} "
            f"[{tight['lo']:.3f}, {tight['hi']:.3f}]" + edge_note(tight["lo"])
        )
    if s.get("seed_verdicts"):
        out.append(f"Each training seed of `{cand}` alone as the candidate, against the same baselines:")
    for member, seed_missed in s.get("seed_verdicts", {}).items():
        said = "; ".join(
            f"{label} "
            + ("MET" if not seed_missed[rule] else f"NOT met (against {', '.join(seed_missed[rule])})")
            for rule, label in zip(RULES, ("J4 + J2", "J4 + J2c", "protocol"), strict=True)
        )
        out.append(f"- `{member}` alone as the candidate: {said}.")
    out.append("Per baseline:")
    for base, v in s["verdict_at_0.25"].items():
        judged = ", ".join(f"{k} {'yes' if v.get(k) else 'no'}" for k in keys)
        out.append(
            f"- `{cand}` vs `{base}` at 0.25 (CI of the difference above zero?): {judged} -> "
            f"J4+J2 {'WIN' if v.get('wins_j2') else 'no win'}; "
            f"J4+J2c {'WIN' if v.get('wins_j2c') else 'no win'}; "
            f"protocol (J4 + J2, J2c or J1b) {'WIN' if v['wins'] else 'no win'}"
        )
    return out
