"""postier.filters"""
