"""Write clsviz's demo corpus and demo pairs (the documented way these files were made).

    python scripts/make_demo_corpus.py

Every sentence is composed from hand-written frames and vocabulary in this file, with a fixed
seed, so running it again gives the same ``demo_corpus.csv`` and ``demo_pairs.csv``. The
frames carry the labels by construction: a frame knows its sentiment (including negated and
contrastive frames such as "not bad at all" or "I expected it to be awful, but ..."), its
form (statement / question / command), and the word-order pairs know who acts. See README.md
beside this file for what each label means and the counts per class.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "clsviz" / "data"
SEED = 20251124

# topic -> things (singular noun phrases), positive and negative adjectives that fit every thing
TOPICS = {
    "food": dict(
        things=["the soup", "the pasta", "the lemon cake", "the curry", "the bread", "the pizza", "the salad",
                "the coffee", "the risotto", "the apple pie", "the breakfast", "the fish stew"],
        pos=["delicious", "tasty", "fresh", "wonderful", "excellent", "superb"],
        neg=["bland", "stale", "greasy", "cold", "overcooked", "disappointing"],
        pos_more=["perfectly seasoned", "rich and warming", "worth the wait"],
        neg_more=["terribly salty", "a real letdown"],
    ),
    "sports": dict(
        things=["the match", "the final", "the derby", "the marathon", "the tennis final", "the second half",
                "the cup game", "the boxing match", "the relay race", "the rugby game", "the season opener"],
        pos=["thrilling", "exciting", "brilliant", "superb", "gripping", "impressive"],
        neg=["dull", "boring", "sloppy", "disappointing", "dreadful"],
        pos_more=["a joy to watch", "worth the ticket"],
        neg_more=["painfully slow", "a mess"],
    ),
    "technology": dict(
        things=["the new phone", "the laptop", "the latest update", "the app", "the camera", "the smartwatch",
                "the printer", "the tablet", "the wireless router", "the new keyboard", "the video editor"],
        pos=["fast", "reliable", "excellent", "impressive", "intuitive"],
        neg=["slow", "buggy", "unreliable", "clunky", "useless"],
        pos_more=["easy to use", "well designed"],
        neg_more=["hard to set up", "badly designed"],
    ),
    "weather": dict(
        things=["the weather", "the weekend", "the morning", "the afternoon", "the summer", "the spring",
                "the evening", "the holiday weather", "the day of the picnic", "the first week of May"],
        pos=["lovely", "glorious", "sunny", "mild", "pleasant"],
        neg=["miserable", "gloomy", "freezing", "dreary", "stormy"],
        pos_more=["bright and warm", "perfect for a walk"],
        neg_more=["wet and windy", "far too humid"],
    ),
    "music": dict(
        things=["the concert", "the album", "the new single", "the show", "the orchestra", "the performance",
                "the opera", "the gig", "the jazz set", "the choir", "the festival lineup"],
        pos=["wonderful", "beautiful", "brilliant", "moving", "superb"],
        neg=["boring", "dull", "awful", "forgettable", "painful"],
        pos_more=["full of energy", "a delight"],
        neg_more=["out of tune", "a letdown"],
    ),
    "travel": dict(
        things=["the hotel", "the flight", "the trip", "the train journey", "the tour", "the beach",
                "the resort", "the hostel", "the ferry crossing", "the road trip", "the guided walk"],
        pos=["wonderful", "relaxing", "comfortable", "lovely", "unforgettable"],
        neg=["exhausting", "crowded", "dirty", "miserable", "uncomfortable", "overpriced"],
        pos_more=["worth every penny", "great value"],
        neg_more=["a nightmare", "a waste of money"],
    ),
}

# Frames: {T}/{t} = the thing (capitalised / not); {p}/{n} = a positive / negative adjective that
# grades ("so {p}", "not {n} at all"); {P}/{N} = that or a longer phrase ("worth every penny").
# Each frame is (text, sentiment, form); negation and contrast are written into the frame.
STATEMENTS = [
    ("{T} was {P}.", "positive"),
    ("Honestly, {t} was {P}.", "positive"),
    ("I thought {t} was {P}.", "positive"),
    ("{T} was not {n} at all.", "positive"),
    ("{T} was far from {n}; it was {P}.", "positive"),
    ("I expected {t} to be {N}, but it was {P}.", "positive"),
    ("Everyone warned me that {t} would be {N}, yet it turned out to be {P}.", "positive"),
    ("Nobody could call {t} {n}.", "positive"),
    ("I was worried {t} would be {N}, but I was wrong.", "positive"),
    ("{T} was never {n}, not even for a moment.", "positive"),
    ("Although the start was shaky, {t} ended up {p}.", "positive"),
    ("My friends say {t} was {P}, and I agree.", "positive"),
    ("{T} was {N}.", "negative"),
    ("Sadly, {t} was {N}.", "negative"),
    ("I found {t} {N}.", "negative"),
    ("{T} was not {p} at all.", "negative"),
    ("{T} was anything but {p}.", "negative"),
    ("I expected {t} to be {P}, but it was {N}.", "negative"),
    ("Everyone said {t} would be {P}, but it turned out to be {N}.", "negative"),
    ("Nothing about {t} was {p}.", "negative"),
    ("I hoped {t} would be {P}; instead it was {N}.", "negative"),
    ("{T} was hardly {p}.", "negative"),
    ("It started well, but {t} soon became {n}.", "negative"),
    ("I would not call {t} {p}; it was {N}.", "negative"),
]
QUESTIONS = [
    ("Wasn't {t} {P}?", "positive"),
    ("Who knew {t} would be so {p}?", "positive"),
    ("Did you notice how {p} {t} was?", "positive"),
    ("Isn't it great that {t} was not {n} after all?", "positive"),
    ("Wasn't {t} surprisingly {p}?", "positive"),
    ("Why did I ever doubt that {t} would be {P}?", "positive"),
    ("Could {t} have been any more {p}?", "positive"),
    ("Why was {t} so {n}?", "negative"),
    ("How could {t} be this {n}?", "negative"),
    ("Why wasn't {t} {p} this time?", "negative"),
    ("Did anyone else find {t} {N}?", "negative"),
    ("Who on earth called {t} {p}?", "negative"),
    ("Is it just me, or was {t} {N}?", "negative"),
    ("Why does {t} have to be so {n} every time?", "negative"),
]
COMMANDS = [
    ("Don't miss {t}; it is {P}.", "positive"),
    ("Make time for {t}, because it is {P}.", "positive"),
    ("Tell everyone that {t} is {P}.", "positive"),
    ("Don't listen to anyone who says {t} is {N}.", "positive"),
    ("Give {t} a chance; it is not {n} at all.", "positive"),
    ("Trust me, {t} is {P}.", "positive"),
    ("Avoid {t}; it is {N}.", "negative"),
    ("Don't waste your time on {t}, because it is {N}.", "negative"),
    ("Skip {t}; it is {N}.", "negative"),
    ("Don't believe anyone who says {t} is {P}.", "negative"),
    ("Forget about {t}; it is far from {p}.", "negative"),
    ("Stay away from {t}, it is {N}.", "negative"),
]
# Weather cannot be skipped or given a chance: it has its own commands.
WEATHER_COMMANDS = [
    ("Get outside and enjoy {t}; it is {P}.", "positive"),
    ("Make the most of {t}, because it is {P}.", "positive"),
    ("Don't stay indoors: {t} is {P}.", "positive"),
    ("Leave your coat at home; {t} is not {n} at all.", "positive"),
    ("Plan something outdoors, since {t} is {P}.", "positive"),
    ("Bring a coat; {t} is {N}.", "negative"),
    ("Stay inside, because {t} is {N}.", "negative"),
    ("Don't plan a picnic; {t} is {N}.", "negative"),
    ("Wrap up warm, {t} is anything but {p}.", "negative"),
    ("Cancel the barbecue; {t} is {N}.", "negative"),
]
PREFIXES = ["", "", "", "", "Last weekend, ", "To be fair, ", "In my opinion, ", "Frankly, ",
            "According to my sister, ", "As far as I could tell, "]

# Hand-written sentences with a looser shape than the frames: (text, topic, sentiment, form).
HANDWRITTEN = [
    ("The striker scored twice in the last ten minutes, and the whole stadium sang.", "sports", "positive", "statement"),
    ("We lost again, and nobody on the pitch seemed to care.", "sports", "negative", "statement"),
    ("I never thought I would enjoy a cricket match, but I stayed until the very last ball.", "sports", "positive", "statement"),
    ("The referee missed an obvious foul and the game fell apart after that.", "sports", "negative", "statement"),
    ("Did you see that save in the final minute?", "sports", "positive", "question"),
    ("Why do they keep playing the same tired tactics every week?", "sports", "negative", "question"),
    ("Get a ticket for the next home game; you will not regret it.", "sports", "positive", "command"),
    ("Don't bother staying for the second half, it only gets worse.", "sports", "negative", "command"),
    ("My grandmother's bread is still warm when she cuts it, and it smells wonderful.", "food", "positive", "statement"),
    ("The waiter forgot our order, and the soup arrived cold an hour later.", "food", "negative", "statement"),
    ("It isn't fancy, but the noodle bar round the corner never lets me down.", "food", "positive", "statement"),
    ("The menu promised fresh fish, yet everything tasted like it came from a freezer.", "food", "negative", "statement"),
    ("Have you tried the plum tart at the market stall?", "food", "positive", "question"),
    ("Who puts this much sugar in a tomato sauce?", "food", "negative", "question"),
    ("Order the dumplings and share them with the whole table.", "food", "positive", "command"),
    ("Never order the set menu there unless you like chewy meat.", "food", "negative", "command"),
    ("The battery now lasts two full days, which I did not expect from such a small phone.", "technology", "positive", "statement"),
    ("After the update, my laptop takes five minutes to start and crashes twice a day.", "technology", "negative", "statement"),
    ("I was sure the cheap headphones would break, but they still work perfectly a year later.", "technology", "positive", "statement"),
    ("The smart speaker keeps mishearing me and ordering things I never asked for.", "technology", "negative", "statement"),
    ("Is there anything this little camera cannot do?", "technology", "positive", "question"),
    ("Why does the printer always jam right before a deadline?", "technology", "negative", "question"),
    ("Back up your photos to the new drive; it is quick and simple.", "technology", "positive", "command"),
    ("Don't install the beta version unless you enjoy losing your files.", "technology", "negative", "command"),
    ("The fog lifted by noon and the whole valley was bathed in sunshine.", "weather", "positive", "statement"),
    ("It rained for nine days in a row and the garden turned into a swamp.", "weather", "negative", "statement"),
    ("The forecast said storms, but we had a calm and golden evening on the beach.", "weather", "positive", "statement"),
    ("A bitter wind blew all afternoon, and nobody wanted to leave the house.", "weather", "negative", "statement"),
    ("Isn't it lovely to have blue skies after such a grey winter?", "weather", "positive", "question"),
    ("How much longer is this heatwave going to last?", "weather", "negative", "question"),
    ("Open the windows and let the spring air in.", "weather", "positive", "command"),
    ("Keep the children indoors today; the hail is the size of marbles.", "weather", "negative", "command"),
    ("The violinist played the slow movement so gently that the hall went completely silent.", "music", "positive", "statement"),
    ("The sound was so muddy that I could not make out a single word of the lyrics.", "music", "negative", "statement"),
    ("I went along only to please my brother, and I left humming every song.", "music", "positive", "statement"),
    ("Their new record sounds like a tired copy of their first one.", "music", "negative", "statement"),
    ("Have you heard the choir sing that old folk song in harmony?", "music", "positive", "question"),
    ("Why was the drummer so far ahead of everyone else?", "music", "negative", "question"),
    ("Put on the second side of the album and turn it up.", "music", "positive", "command"),
    ("Don't buy the live recording; the crowd drowns out the band.", "music", "negative", "command"),
    ("Our room looked out over the harbour, and breakfast was served on the balcony.", "travel", "positive", "statement"),
    ("The bus broke down twice and we reached the village long after dark.", "travel", "negative", "statement"),
    ("The airport was chaos, but the island itself made up for every minute of it.", "travel", "positive", "statement"),
    ("The photos showed a quiet beach, but we found a building site next to the hotel.", "travel", "negative", "statement"),
    ("Have you ever watched the sun rise over the mountains from a night train?", "travel", "positive", "question"),
    ("Why did nobody tell us the museum closes on Mondays?", "travel", "negative", "question"),
    ("Book the early ferry and spend the whole day on the island.", "travel", "positive", "command"),
    ("Don't rent a car in the old town; the streets are far too narrow.", "travel", "negative", "command"),
]

# Word-order pairs: (person, animal, past verb, base verb, sentiment). Both orders use the same
# words, so only word order tells who acts.
PEOPLE = ["the boy", "the girl", "the farmer", "the teacher", "the old man", "the woman", "the child",
          "the postman", "the nurse", "the fisherman", "the baker", "the student"]
ANIMALS = ["the dog", "the cat", "the horse", "the goat", "the duck", "the parrot", "the rabbit", "the cow",
           "the goose", "the pony", "the puppy", "the monkey"]
ORDER_VERBS = [
    ("hugged", "hug", "positive"), ("rescued", "rescue", "positive"), ("comforted", "comfort", "positive"),
    ("helped", "help", "positive"), ("protected", "protect", "positive"), ("greeted", "greet", "positive"),
    ("chased", "chase", "negative"), ("bit", "bite", "negative"), ("scared", "scare", "negative"),
    ("kicked", "kick", "negative"), ("attacked", "attack", "negative"), ("ignored", "ignore", "negative"),
]
ORDER_STATEMENTS = ["{A} {v} {B}.", "{A} {v} {B} in the garden.", "Yesterday {a} {v} {B}.",
                    "This morning {a} {v} {B} near the river."]
ORDER_QUESTIONS = ["Did {a} {b_verb} {B}?", "Why did {a} {b_verb} {B}?"]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _fill(frame: str, thing: str, spec: dict, rng: random.Random, prefix: str = "") -> str:
    words = dict(
        p=rng.choice(spec["pos"]),
        n=rng.choice(spec["neg"]),
        P=rng.choice(spec["pos"] + spec["pos_more"]),
        N=rng.choice(spec["neg"] + spec["neg_more"]),
    )
    text = frame.format(T=_cap(thing), t=thing, **words)
    if prefix and frame.startswith("{T}"):
        text = prefix + thing + text[len(_cap(thing)):]
    return text


def _topic_rows(rng: random.Random, topic: str, spec: dict, per_form: dict) -> list[dict]:
    rows, seen = [], set()
    commands = WEATHER_COMMANDS if topic == "weather" else COMMANDS
    for form, frames in (("statement", STATEMENTS), ("question", QUESTIONS), ("command", commands)):
        for sentiment in ("positive", "negative"):
            pool = [f for f, s in frames if s == sentiment]
            wanted = per_form[form] // 2
            made = 0
            while made < wanted:
                # Cycle through the frames so every frame is used about equally often.
                frame = pool[made % len(pool)] if made < len(pool) else rng.choice(pool)
                thing = rng.choice(spec["things"])
                prefix = rng.choice(PREFIXES) if form == "statement" else ""
                text = _fill(frame, thing, spec, rng, prefix)
                if text in seen:
                    continue
                seen.add(text)
                rows.append(dict(text=text, topic=topic, sentiment=sentiment, form=form, order=""))
                made += 1
    return rows


def _order_pairs(rng: random.Random, n_pairs: int) -> list[list[dict]]:
    pairs, seen = [], set()
    while len(pairs) < n_pairs:
        person, animal = rng.choice(PEOPLE), rng.choice(ANIMALS)
        past, base, sentiment = ORDER_VERBS[len(pairs) % len(ORDER_VERBS)]
        question = len(pairs) % 4 == 3
        frame = rng.choice(ORDER_QUESTIONS if question else ORDER_STATEMENTS)
        if (person, animal, past) in seen:
            continue
        seen.add((person, animal, past))
        pair = []
        for agent, patient, label in ((person, animal, "person_agent"), (animal, person, "animal_agent")):
            text = frame.format(A=_cap(agent), a=agent, B=patient, v=past, b_verb=base)
            pair.append(dict(text=_cap(text), topic="animals", sentiment=sentiment,
                             form="question" if question else "statement", order=label))
        pairs.append(pair)
    return pairs


def make_corpus(seed: int = SEED, per_topic: int = 120, n_order_pairs: int = 64) -> list[dict]:
    """Rows (text, topic, sentiment, form, order): composed and hand-written topic rows shuffled
    together, word-order pairs inserted as adjacent rows."""
    rng = random.Random(seed)
    per_form = {"statement": per_topic // 2, "question": per_topic // 4}
    per_form["command"] = per_topic - per_form["statement"] - per_form["question"]
    rows = [r for topic, spec in TOPICS.items() for r in _topic_rows(rng, topic, spec, per_form)]
    rows += [dict(text=t, topic=topic, sentiment=s, form=f, order="") for t, topic, s, f in HANDWRITTEN]
    rng.shuffle(rows)
    blocks = [[r] for r in rows]
    for pair in _order_pairs(rng, n_order_pairs):
        blocks.insert(rng.randrange(len(blocks) + 1), pair)
    out = [r for block in blocks for r in block]
    assert len({r["text"] for r in out}) == len(out), "duplicate sentence"
    return out


def make_pairs(seed: int = SEED) -> list[dict]:
    """Scored pairs (sentence1, sentence2, score, kind); scores follow the construction rule
    written next to each kind (see README.md)."""
    rng = random.Random(seed + 1)
    out, seen = [], set()
    topics = list(TOPICS)

    def add(a: str, b: str, score: float, kind: str) -> bool:
        if (a, b) in seen or a == b:
            return False
        seen.add((a, b))
        out.append(dict(sentence1=a, sentence2=b, score=score, kind=kind))
        return True

    def thing(topic: str) -> str:
        return rng.choice(TOPICS[topic]["things"])

    # Paraphrases. Active / passive: same event, same roles -> 5.0
    while sum(r["kind"] == "paraphrase" for r in out) < 20:
        person, animal = rng.choice(PEOPLE), rng.choice(ANIMALS)
        past = rng.choice([v for v in ORDER_VERBS if v[0] != "bit"])[0]
        agent, patient = (person, animal) if rng.random() < 0.5 else (animal, person)
        add(f"{_cap(agent)} {past} {patient}.", f"{_cap(patient)} was {past} by {agent}.", 5.0, "paraphrase")
    # Same opinion, other words -> 4.6
    while sum(r["kind"] == "paraphrase" for r in out) < 40:
        topic = rng.choice(topics)
        t, p = thing(topic), rng.choice(TOPICS[topic]["pos" if rng.random() < 0.5 else "neg"])
        add(f"{_cap(t)} was {p}.", f"I thought {t} was {p}.", 4.6, "paraphrase")
    # A negated opposite and the plain adjective: near-paraphrase -> 4.0
    while sum(r["kind"] == "paraphrase" for r in out) < 60:
        topic = rng.choice(topics)
        t, p, n = thing(topic), rng.choice(TOPICS[topic]["pos"]), rng.choice(TOPICS[topic]["neg"])
        if rng.random() < 0.5:
            add(f"{_cap(t)} was not {n} at all.", f"{_cap(t)} was {p}.", 4.0, "paraphrase")
        else:
            add(f"{_cap(t)} was not {p} at all.", f"{_cap(t)} was {n}.", 4.0, "paraphrase")

    # Related. Same topic, another thing, same sentiment -> 3.0
    while sum(r["kind"] == "related" for r in out) < 15:
        topic = rng.choice(topics)
        side = "pos" if rng.random() < 0.5 else "neg"
        t1, t2 = rng.sample(TOPICS[topic]["things"], 2)
        add(f"{_cap(t1)} was {rng.choice(TOPICS[topic][side])}.",
            f"{_cap(t2)} was {rng.choice(TOPICS[topic][side])}.", 3.0, "related")
    # Same thing, opposite opinion -> 2.0
    while sum(r["kind"] == "related" for r in out) < 30:
        topic = rng.choice(topics)
        t = thing(topic)
        add(f"{_cap(t)} was {rng.choice(TOPICS[topic]['pos'])}.",
            f"{_cap(t)} was {rng.choice(TOPICS[topic]['neg'])}.", 2.0, "related")
    # Negation flips the meaning with one word -> 2.0
    while sum(r["kind"] == "related" for r in out) < 40:
        topic = rng.choice(topics)
        t, p = thing(topic), rng.choice(TOPICS[topic]["pos"])
        add(f"{_cap(t)} was {p}.", f"{_cap(t)} was not {p}.", 2.0, "related")
    # Swapped roles: the same words, another event -> 2.0
    while sum(r["kind"] == "related" for r in out) < 55:
        person, animal = rng.choice(PEOPLE), rng.choice(ANIMALS)
        past = rng.choice(ORDER_VERBS)[0]
        add(f"{_cap(person)} {past} {animal}.", f"{_cap(animal)} {past} {person}.", 2.0, "related")

    # Unrelated. Other topics, same frame and sentiment -> 1.0; other topics, other frames -> 0.0
    while sum(r["kind"] == "unrelated" for r in out) < 25:
        t1, t2 = rng.sample(topics, 2)
        side = "pos" if rng.random() < 0.5 else "neg"
        add(f"{_cap(thing(t1))} was {rng.choice(TOPICS[t1][side])}.",
            f"{_cap(thing(t2))} was {rng.choice(TOPICS[t2][side])}.", 1.0, "unrelated")
    while sum(r["kind"] == "unrelated" for r in out) < 55:
        t1, t2 = rng.sample(topics, 2)
        f1 = rng.choice(STATEMENTS)[0]
        f2 = rng.choice(QUESTIONS)[0]
        s1 = _fill(f1, thing(t1), TOPICS[t1], rng)
        s2 = _fill(f2, thing(t2), TOPICS[t2], rng)
        add(s1, s2, 0.0, "unrelated")
    rng.shuffle(out)
    return out


def _write(path: Path, rows: list[dict], columns: list[str]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _counts(rows: list[dict], column: str) -> str:
    counts: dict[str, int] = {}
    for r in rows:
        key = r[column] or "(empty)"
        counts[key] = counts.get(key, 0) + 1
    lines = [f"### `{column}`", "", "| value | rows |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return "\n".join(lines)


def main() -> None:
    corpus, pairs = make_corpus(), make_pairs()
    _write(DATA / "demo_corpus.csv", corpus, ["text", "topic", "sentiment", "form", "order"])
    _write(DATA / "demo_pairs.csv", pairs, ["sentence1", "sentence2", "score", "kind"])
    # The count tables of README.md, printed so the data card can be updated from them.
    print(f"{len(corpus)} sentences, {len(pairs)} pairs\n")
    for column in ("topic", "sentiment", "form", "order"):
        print(_counts(corpus, column), end="\n\n")
    print(_counts(pairs, "kind"))


if __name__ == "__main__":
    main()
