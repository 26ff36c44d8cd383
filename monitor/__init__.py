"""news-monitor: polls news feeds, matches rules, and alerts without losing or repeating one."""

__version__ = "0.1.0"
