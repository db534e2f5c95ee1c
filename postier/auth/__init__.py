"""postier.auth"""
