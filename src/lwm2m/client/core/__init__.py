"""The LwM2M core objects with device behaviour (LwM2M-TS-Core 1.2 Appendix E)."""
