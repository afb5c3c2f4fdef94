"""Evaluation: multiple-choice grading, XSTest and its refusal detector, statistics, the labelled quality set."""
