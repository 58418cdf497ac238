"""tailsense-botclick: bot-click detection pipeline, model and scoring service."""
