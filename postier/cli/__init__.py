"""postier.cli"""
