"""A version's model card in MLflow: its facts (``card/facts.json``, training/card_facts.py),
the card rendered from them as Markdown and HTML (``card/model_card.md``,
``card/model_card.html``), and the Markdown as the version's description.

Registration (training/register.py) attaches the card of every new version; the registry
publishes it again with the release once the version is promoted (registry/card.py, whose
command also prints any version's card).
"""

from __future__ import annotations

from typing import Any

from training.card_content import render
from training.mlflow_names import CARD_MARKDOWN

FACTS = "card/facts.json"
MARKDOWN = CARD_MARKDOWN
HTML = "card/model_card.html"
# MLflow keeps a version's description in a VARCHAR(5000) (PostgreSQL enforces it).
DESCRIPTION_LIMIT = 5000


def description(card: str) -> str:
    """The card as a version description: whole when it fits MLflow's column, else cut at a
    section boundary with a pointer to the artifact."""
    if len(card) <= DESCRIPTION_LIMIT:
        return card
    note = f"\n\n(The full card is the version's artifact {MARKDOWN}.)\n"
    cut = card.rfind("\n## ", 0, DESCRIPTION_LIMIT - len(note))
    return card[: max(cut, 0)] + note


def attach(client: Any, facts: dict[str, Any]) -> str:
    """Log the facts with the version's run and publish the card; the Markdown."""
    client.log_dict(facts["run_id"], facts, FACTS)
    return publish(client, facts)


def publish(
    client: Any,
    facts: dict[str, Any],
    release: dict[str, str] | None = None,
    artifacts: bool = True,
) -> str:
    """The card (with the release, once promoted) as the version's description and, with
    ``artifacts``, as the run's Markdown and HTML artifacts; the Markdown.

    Raises:
        mlflow.exceptions.MlflowException: MLflow refused a write (the version or run is
            gone, the store is unreachable); artifact-store errors as the store raises them.
    """
    card = render(facts, release)
    if artifacts:
        client.log_text(facts["run_id"], card, MARKDOWN)
        client.log_text(facts["run_id"], render(facts, release, "html"), HTML)
    client.update_model_version(facts["name"], facts["version"], description=description(card))
    return card
