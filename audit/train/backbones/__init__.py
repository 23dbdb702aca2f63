"""Backbone definitions ported into imgaudit (their weights come from pip packages, never from a hub)."""
