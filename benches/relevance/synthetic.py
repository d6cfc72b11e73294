"""J4: synthetic task dialogues whose needed tokens are known.

A user states slot values early (dates, times, names, numbers, IDs); filler turns follow;
about 30% of slots are overridden later (only the latest value is gold); decoy values of
the same kinds are mentioned and never referenced. The last context turn (assistant)
asks to finalise without naming any slot; the target user turn refers back to two slots
("the same time as before"), and the assistant's confirmation at t+1 repeats the gold
values. So which two slots are needed is known only in the future turns: a method must
keep the latest value of every slot and drop the decoys and superseded values.

``ask_names_kinds=True`` restores the first version of J4, whose last context turn
named the two slot kinds: there embedding similarity to that turn finds the needed turns
by their wording (recall@0.25 = 1.0 in docs/benchmarks.md), which leaks the future.

Three disjoint template and filler pools exist: ``"train"`` (may be used to fit scorers),
``"dev"`` (tuning: its templates are seen neither by a fitted scorer nor by the test) and
``"test"`` (benchmark instances only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benches.relevance.data import Instance, Turn

KINDS: dict[str, str] = {
    "date": "travel date",
    "time": "pickup time",
    "name": "contact name",
    "number": "party size",
    "id": "booking code",
}
NAMES = (
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Tanaka",
    "Haddad",
    "Novak",
    "Castillo",
    "Brennan",
    "Ivanova",
    "Mensah",
    "Kowalski",
    "Ferreira",
    "Nakamura",
    "Oyelaran",
    "Petrov",
    "Quispe",
)


@dataclass(frozen=True)
class TemplatePool:
    opening: tuple[str, ...]
    state: tuple[str, ...]
    override: tuple[str, ...]
    decoy: tuple[str, ...]
    ack: tuple[str, ...]
    filler_user: tuple[str, ...]
    filler_assistant: tuple[str, ...]
    ask: tuple[str, ...]  # asks to finalise; no slot named
    ask_named: tuple[str, ...]  # first version: names the two slot kinds
    backref: tuple[str, ...]
    confirm: tuple[str, ...]
    closing: tuple[str, ...]


POOLS: dict[str, TemplatePool] = {
    "train": TemplatePool(
        opening=(
            "Hi, I want to arrange a shuttle for our group.",
            "Hello, I am organising a trip and need help.",
        ),
        state=(
            "My {k} is {v} by the way.",
            "Please note the {k}: {v} for this booking.",
            "For the record, the {k} will be {v} this time.",
        ),
        override=("Actually, change the {k} to {v} instead.", "Update: the {k} is now {v} after all."),
        decoy=(
            "My neighbour once had {v} as a {k}, funny coincidence.",
            "Last year the {k} was {v}, not relevant now.",
        ),
        ack=("Noted, thank you.", "Got it, I have written that down.", "Okay, that is recorded."),
        filler_user=(
            "The weather has been quite rainy lately and the roads are busy.",
            "We also want to visit a museum while we are there if there is time.",
            "My kids love trains, so any scenic route would be a bonus.",
            "I read that the old town is pleasant in the evening with many cafes.",
            "Our luggage is mostly backpacks, nothing too heavy or bulky.",
            "Someone recommended trying the local pastries near the station.",
        ),
        filler_assistant=(
            "That sounds lovely, the region is known for its landscapes and friendly locals.",
            "Many travellers enjoy the riverside walk, which takes about an hour.",
            "I can suggest a few restaurants later if you would like some ideas.",
            "Backpacks are ideal, drivers appreciate light luggage on longer routes.",
            "The museums usually open at nine and close in the late afternoon.",
            "Evening markets are popular and often have live music on weekends.",
        ),
        ask=("Before I finalise, is there anything else I should check?",),
        ask_named=("Before I finalise, which {k1} and {k2} should I use?",),
        backref=("Use the same {k1} and {k2} as before, please.",),
        confirm=("Confirmed: {k1} {v1} and {k2} {v2}.",),
        closing=("Great, thanks a lot for your help.",),
    ),
    "test": TemplatePool(
        opening=(
            "Good morning, could you help me book a conference venue?",
            "Hey there, I need to set up a meeting with a supplier.",
        ),
        state=(
            "The {k} we agreed on is {v} as discussed.",
            "Write down {v} as the {k} please.",
            "I would like the {k} set to {v} if possible.",
        ),
        override=("Sorry, scratch that, the {k} should be {v} instead.", "New plan: make the {k} {v} now."),
        decoy=(
            "Unrelated, but my cousin uses {v} as her {k}.",
            "In an old email the {k} said {v}; ignore it.",
        ),
        ack=("Understood.", "Sure, I have added that to the file.", "Alright, saved in the notes."),
        filler_user=(
            "The office coffee machine broke again this week, which was a disaster.",
            "Our team is growing quickly, we hired three engineers last month.",
            "I have been reading a novel about sailors in the nineteenth century.",
            "The parking garage near our building is under renovation until spring.",
            "We might need a projector, although most people bring laptops anyway.",
            "Lunch options around the venue matter to some of my colleagues.",
        ),
        filler_assistant=(
            "Congratulations on the growth, onboarding new people takes real effort.",
            "Renovations are always inconvenient, public transport may be easier.",
            "Most venues provide projectors and screens on request at no charge.",
            "Historical novels can be very immersive, especially maritime ones.",
            "Several bistros nearby offer set menus for groups at lunchtime.",
            "A broken coffee machine can certainly slow down a busy morning.",
        ),
        ask=("To complete this, shall I go ahead with what is on file?",),
        ask_named=("To complete this I need the {k1} and the {k2} again.",),
        backref=("Keep the {k1} and {k2} I told you earlier.",),
        confirm=("All set with {k1} {v1} plus {k2} {v2}.",),
        closing=("Perfect, that is everything for today.",),
    ),
    "dev": TemplatePool(
        opening=(
            "Hello, I need to reserve a table and a car for a family dinner.",
            "Hi, can you sort out a repair visit for my apartment?",
        ),
        state=(
            "Put {v} down as the {k}, thanks.",
            "The {k} on our side is {v}, just so you know.",
            "Go with {v} for the {k} on this one.",
        ),
        override=(
            "Correction: the {k} becomes {v} rather than before.",
            "Change of mind, set the {k} to {v}.",
        ),
        decoy=(
            "Funny, a friend of mine had {v} for a {k} once.",
            "On an old receipt the {k} read {v}, that one is void.",
        ),
        ack=("Thanks, noted on my side.", "Perfect, it is in the system.", "Very well, I have it."),
        filler_user=(
            "My grandmother turns ninety this year, so everyone is travelling in.",
            "The dishwasher has been leaking a little since the weekend.",
            "We usually prefer quiet places where people can talk without shouting.",
            "Two of the guests are vegetarian and one cannot eat nuts at all.",
            "The building has an old lift that stops working in cold weather.",
            "I would rather avoid the motorway because of the roadworks.",
        ),
        filler_assistant=(
            "A ninetieth birthday is a wonderful occasion to gather the whole family.",
            "Small leaks often come from a worn seal, which is quick to replace.",
            "Quieter rooms are usually available if requested a few days ahead.",
            "Most kitchens can prepare vegetarian and nut-free dishes on request.",
            "Technicians can carry tools up the stairs if the lift is out of order.",
            "The scenic road is slower but avoids most of the current roadworks.",
        ),
        ask=("Shall I confirm everything as we have it now?",),
        ask_named=("I still need the {k1} and {k2} to confirm, please.",),
        backref=("Take the {k1} and {k2} from what I said before.",),
        confirm=("Booked with {k1} {v1} and {k2} {v2}.",),
        closing=("Wonderful, thank you for sorting it out.",),
    ),
}


def _value(kind: str, rng: np.random.Generator) -> str:
    if kind == "date":
        return f"2027-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}"
    if kind == "time":
        return f"{rng.integers(6, 23):02d}:{rng.choice([0, 15, 30, 45]):02d}"
    if kind == "name":
        return str(rng.choice(NAMES))
    if kind == "number":
        return str(rng.integers(3, 99))
    return f"{chr(65 + rng.integers(26))}{chr(65 + rng.integers(26))}-{rng.integers(1000, 10000)}"


def _fill(template: str, **slots: str) -> tuple[list[str], list[int]]:
    """Words of a filled template and the word positions holding a ``{v}`` value."""
    words, marked = [], []
    for raw in template.split():
        if "{v}" in raw:
            marked.append(len(words))
        words += raw.format(**slots).split()
    return words, marked


def task_dialogue(
    rng: np.random.Generator,
    pool: TemplatePool,
    index: int,
    split: str,
    override_p: float = 0.3,
    ask_names_kinds: bool = False,
) -> Instance:
    """One synthetic dialogue as an `Instance` with ``needed`` and ``decoy`` word indices."""
    kinds = list(rng.choice(list(KINDS), size=3, replace=False))
    turns: list[list[str]] = []
    roles: list[str] = []
    value_at: list[tuple[int, int]] = []  # (turn, word) of each stated value, per label below
    labels: list[tuple[str, str]] = []  # ("state"|"override"|"decoy", kind)
    gold: dict[str, str] = {}

    def say(role: str, template: str, label: tuple[str, str] | None = None, **slots: str) -> None:
        words, marked = _fill(template, **slots)
        if label is not None:
            for m in marked:
                value_at.append((len(turns), m))
                labels.append(label)
        turns.append(words)
        roles.append(role)

    def filler(n: int) -> None:
        for _ in range(n):
            say("user", " ".join(rng.choice(pool.filler_user, size=2, replace=False)))
            say("assistant", " ".join(rng.choice(pool.filler_assistant, size=2, replace=False)))

    say("user", str(rng.choice(pool.opening)))
    say("assistant", "Of course, please share the details.")
    overridden = [k for k in kinds if rng.random() < override_p]
    for kind in kinds:
        gold[kind] = _value(kind, rng)
        say("user", str(rng.choice(pool.state)), ("state", kind), k=KINDS[kind], v=gold[kind])
        say("assistant", str(rng.choice(pool.ack)))
    filler(int(rng.integers(1, 3)))
    used = set(gold.values())
    for kind in (str(k) for k in rng.choice(kinds, size=2, replace=False)):
        value = _value(kind, rng)
        while value in used:
            value = _value(kind, rng)
        used.add(value)
        say("user", str(rng.choice(pool.decoy)), ("decoy", kind), k=KINDS[kind], v=value)
        say("assistant", str(rng.choice(pool.ack)))
    filler(int(rng.integers(1, 3)))
    for kind in overridden:
        while gold[kind] in used:
            gold[kind] = _value(kind, rng)
        used.add(gold[kind])
        say("user", str(rng.choice(pool.override)), ("override", kind), k=KINDS[kind], v=gold[kind])
        say("assistant", str(rng.choice(pool.ack)))
    filler(1)
    asked = [str(k) for k in rng.choice(kinds, size=2, replace=False)]
    names = {"k1": KINDS[asked[0]], "k2": KINDS[asked[1]]}
    say("user", "I think that covers everything for now.")
    say("assistant", str(rng.choice(pool.ask_named if ask_names_kinds else pool.ask)), **names)
    n_context = len(turns)
    say("user", str(rng.choice(pool.backref)), **names)
    say("assistant", str(rng.choice(pool.confirm)), v1=gold[asked[0]], v2=gold[asked[1]], **names)
    say("user", str(rng.choice(pool.closing)))

    offsets = np.cumsum([0] + [len(w) for w in turns])
    latest = {}
    for (turn, word), (kind_of, kind) in zip(value_at, labels, strict=False):
        if kind_of in ("state", "override"):
            latest[kind] = int(offsets[turn] + word)
    needed = tuple(sorted(latest[k] for k in asked))
    decoy = tuple(
        int(offsets[t] + w)
        for (t, w), (kind_of, _) in zip(value_at, labels, strict=False)
        if kind_of == "decoy"
    )
    built = tuple(Turn(r, tuple(w)) for r, w in zip(roles, turns, strict=False))
    return Instance(f"j4-{split}-{index}", built[:n_context], built[n_context:], "primary", 0, needed, decoy)


def task_dialogues(n: int, split: str, seed: int, ask_names_kinds: bool = False) -> list[Instance]:
    """``n`` dialogues from the ``split`` template pool ("train", "dev" or "test")."""
    if split not in POOLS:
        raise ValueError(f"unknown J4 split {split!r}; expected one of {sorted(POOLS)}")
    rng = np.random.default_rng([seed, list(POOLS).index(split)])
    return [task_dialogue(rng, POOLS[split], i, split, ask_names_kinds=ask_names_kinds) for i in range(n)]
