"""Per-modality model runners; each module imports torch & co. and is itself imported only when loading."""
