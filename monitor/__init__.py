"""news-monitor: polls news feeds, matches rules, and alerts without losing or repeating an alert."""

__version__ = "0.1.0"
