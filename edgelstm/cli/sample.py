"""`edgelstm sample MODEL`: generate text from a char-lm (.keras or converted step .tflite)."""

from __future__ import annotations

from pathlib import Path

import click

from edgelstm.cli._app import App


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--temperature", type=float, default=0.8, show_default=True, help="0 = greedy.")
@click.option("--length", type=click.IntRange(min=0), default=200, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--prime", default="\n", help="Text fed before sampling (default: a newline).")
@click.option(
    "--vocab",
    type=click.Path(path_type=Path, dir_okay=False),
    help="vocab.json (default: beside MODEL, beside its source model, or the zoo's char-lm).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of the text.")
@click.pass_obj
def sample(
    app: App,
    *,
    model: Path,
    temperature: float,
    length: int,
    seed: int,
    prime: str,
    vocab: Path | None,
    as_json: bool,
) -> None:
    """Sample LENGTH characters at TEMPERATURE from MODEL, seeded (same seed, same text).

    MODEL is a char-lm `.keras` file or a converted step `.tflite` (runs without TensorFlow).
    """
    from edgelstm.zoo.sample import describe, find_vocab, generate, open_stepper

    stepper = open_stepper(model)
    chars = find_vocab(model, stepper.vocab_size, vocab)
    app.info(f"[sample] {model} ({describe(stepper)}), T={temperature}, seed {seed}")
    text = generate(stepper, chars, length=length, temperature=temperature, seed=seed, prime=prime)
    if as_json:
        app.out_json(
            {
                "model": str(model),
                "temperature": temperature,
                "seed": seed,
                "prime": prime,
                "text": text,
            }
        )
    else:
        app.out((prime if prime != "\n" else "") + text)
