"""Robustness: common corruptions and adversarial attacks, measured on a trained run."""
