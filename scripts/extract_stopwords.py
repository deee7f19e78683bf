"""Write lsr/stopwords/LANGUAGE.txt from Lucene's stopword lists, as the Anserini fat jar that pyserini
ships carries them (lucene-analysis-common: the Snowball project's lists under ``snowball/``, the others
under each language's package). One word per line, lowercased, with a header naming the source.

    python scripts/extract_stopwords.py   # needs the pyserini extra (its jar); the output is committed
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pyserini

# PyStemmer language -> the list Lucene's analyzer for that language uses (None: Lucene has none)
SOURCES = {
    "arabic": "ar/stopwords.txt",
    "armenian": "hy/stopwords.txt",
    "basque": "eu/stopwords.txt",
    "catalan": "ca/stopwords.txt",
    "czech": "cz/stopwords.txt",
    "danish": "snowball/danish_stop.txt",
    "dutch": "snowball/dutch_stop.txt",
    "estonian": "et/stopwords.txt",
    "finnish": "snowball/finnish_stop.txt",
    "french": "snowball/french_stop.txt",
    "german": "snowball/german_stop.txt",
    "greek": "el/stopwords.txt",
    "hindi": "hi/stopwords.txt",
    "hungarian": "snowball/hungarian_stop.txt",
    "indonesian": "id/stopwords.txt",
    "irish": "ga/stopwords.txt",
    "italian": "snowball/italian_stop.txt",
    "lithuanian": "lt/stopwords.txt",
    "nepali": "ne/stopwords.txt",
    "norwegian": "snowball/norwegian_stop.txt",
    "persian": "fa/stopwords.txt",
    "portuguese": "snowball/portuguese_stop.txt",
    "romanian": "ro/stopwords.txt",
    "russian": "snowball/russian_stop.txt",
    "serbian": "sr/stopwords.txt",
    "spanish": "snowball/spanish_stop.txt",
    "swedish": "snowball/swedish_stop.txt",
    "tamil": "ta/stopwords.txt",
    "turkish": "tr/stopwords.txt",
}
OUT = Path(__file__).resolve().parents[1] / "lsr" / "stopwords"


def words(text: str, snowball: bool) -> list[str]:
    """Snowball lists: ``word | comment``; the others: a word per line, ``#`` comments."""
    out = []
    for line in text.splitlines():
        word = line.split("|")[0] if snowball else line.split("#")[0]
        word = word.strip().lower()
        if word and word not in out:
            out.append(word)
    return out


def main() -> None:
    jars = sorted((Path(pyserini.__file__).parent / "resources" / "jars").glob("anserini-*-fatjar.jar"))
    OUT.mkdir(exist_ok=True)
    with zipfile.ZipFile(jars[-1]) as jar:
        for language, source in SOURCES.items():
            name = f"org/apache/lucene/analysis/{source}"
            text = jar.read(name).decode("utf-8")
            listed = words(text, source.startswith("snowball/"))
            header = f"# {language}: Lucene's {name} ({jars[-1].name}, from pyserini), {len(listed)} words\n"
            (OUT / f"{language}.txt").write_text(header + "\n".join(listed) + "\n", encoding="utf-8")
            print(language, len(listed))


if __name__ == "__main__":
    main()
