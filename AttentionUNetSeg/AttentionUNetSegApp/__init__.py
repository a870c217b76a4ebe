"""The module's parts that run only inside the Slicer application (Qt): parameter node, panel, sample data, self-test.

They live in a package, not beside AttentionUNetSeg.py, because Slicer takes every .py file in a
scripted-module folder for a module of its own.
"""
