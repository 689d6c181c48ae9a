"""The sample's pseudo-lyrics: verses and a chorus mixing shared English words, quadrant words and
invented per-genre words (related genres share part of theirs)."""

from __future__ import annotations

import numpy as np

from musicvae.local.sample import seeding
from musicvae.local.sample.genres import PARENT, SIBLINGS


def words(text: str, sep: str | None = None) -> list[str]:
    # Long word lists read better as running text than as list literals.
    return text.split(sep)


_SHARED_WORDS = words("""
love heart night baby time day life world eyes soul fire rain light dream home road way
girl boy man woman friend mind hand hands face sky sun moon stars star river sea ocean
wind street city town song music dance feel know want need say tell go come run walk fly
fall rise hold let take give make break leave stay wait cry smile laugh sing play live die
lose find try believe remember forget hope fear tonight tomorrow yesterday forever always
never again alone together still only just more little long last first new old young free
true real wild high low deep cold warm hot sweet blue red gold black white golden broken
lonely crazy easy hard slow fast far close open door window wall floor bed room house car
train morning evening summer winter spring autumn kiss touch call dark shadow memory story
word words name heaven angel devil god prayer church money gold rich poor king queen
promise lie truth goodbye hello yeah oh ooh hey baby darling honey lady mister everybody
nobody somebody something nothing everything somewhere nowhere tears blood bones skin body
voice whisper shout echo silence noise sound beat rhythm rock roll radio heartbeat midnight
sunrise sunset horizon mountain valley field garden flower rose tree leaves snow storm
thunder lightning wave shore island bridge highway mile miles journey way back down up
inside outside over under through across around behind between beyond without within
naïve café déjà señorita
""")

_QUADRANT_WORDS = {
    "Q1": words("happy joy alive shine bright celebrate party smile sunshine glow thrill wonder"),
    "Q2": words("anger rage fight burn scream hate war danger fury storm trouble enemy"),
    "Q3": words("sorrow tears grief lonely empty grey mourning ache regret fading cold hollow"),
    "Q4": words("calm peace gentle quiet soft rest breeze tender slow easy drift serene"),
}

_ONSETS = words("b br bl d dr f fr g gr gl k kr l m n p pr pl r s sh st t tr v z ch th w")
_VOWELS = words("a e i o u ai ou ee oa ia")
_CODAS = ["", "", "", "n", "r", "l", "s", "m", "k", "nd", "st", "x"]
_GENRE_VOCAB = 40
_SHARED_WITH_PARENT = 12
_SHARED_WITH_SIBLING = 8


def _pseudo_words(rng: np.random.Generator, count: int) -> list[str]:
    # Invented words, kept apart from the English pools, so any genre separation a text model
    # finds comes from the words planted here.
    english = set(_SHARED_WORDS).union(*_QUADRANT_WORDS.values())
    words: list[str] = []
    while len(words) < count:
        syllables = int(rng.integers(2, 4))
        word = "".join(
            _ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))]
            for _ in range(syllables)
        )
        word += _CODAS[rng.integers(len(_CODAS))]
        if word not in words and word not in english:
            words.append(word)
    return words


def genre_vocabulary(label: str | None, seed: int = 0) -> list[str]:
    """The ~40 words that mark a genre's lyrics; related genres share part of theirs."""
    own = _pseudo_words(seeding.name_rng(seed, label or "", "words"), _GENRE_VOCAB)
    relative, shared = PARENT.get(label), _SHARED_WITH_PARENT
    if relative is None and label in SIBLINGS:
        relative, shared = SIBLINGS[label], _SHARED_WITH_SIBLING
    if relative is None:
        return own
    # The relative's *own* words, not its full vocabulary, so sibling links cannot recurse.
    borrowed = _pseudo_words(seeding.name_rng(seed, relative, "words"), _GENRE_VOCAB)[:shared]
    return own[: _GENRE_VOCAB - shared] + borrowed


def render_lyrics(label: str | None, quadrant: str, seed: int, index: int) -> str:
    """Lyrics of track `index`: verses and a repeated chorus, about a third genre words."""
    rng = seeding.rng(seed, index, seeding.STREAM_LYRICS)
    pools = [genre_vocabulary(label, seed), _QUADRANT_WORDS[quadrant], _SHARED_WORDS]
    genre_share = rng.uniform(0.3, 0.4)
    weights = [genre_share, 0.08, 0.92 - genre_share]
    target = int(rng.integers(80, 251))
    chorus = _stanza(rng, pools, weights)
    stanzas: list[list[str]] = []
    words = 0
    while words < target:
        stanza = chorus if len(stanzas) % 3 == 1 else _stanza(rng, pools, weights)
        stanza = _fit(stanza, target - words)
        stanzas.append(stanza)
        words += sum(len(line.split()) for line in stanza)
    return "\n\n".join("\n".join(stanza) for stanza in stanzas) + "\n"


def _stanza(rng, pools: list[list[str]], weights: list[float]) -> list[str]:
    lines = []
    for _ in range(4):
        length = int(rng.integers(5, 10))
        choice = rng.choice(len(pools), size=length, p=weights)
        words = [pools[p][rng.integers(len(pools[p]))] for p in choice]
        lines.append(" ".join(words).capitalize())
    return lines


def _fit(stanza: list[str], budget: int) -> list[str]:
    # Trims the last stanza so the song lands inside the 80-250 word range.
    out, used = [], 0
    for line in stanza:
        words = line.split()
        if used + len(words) > budget:
            words = words[: max(budget - used, 0)]
        if not words:
            break
        out.append(" ".join(words))
        used += len(words)
    return out


__all__ = ["genre_vocabulary", "render_lyrics"]
