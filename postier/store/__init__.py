"""postier.store"""
