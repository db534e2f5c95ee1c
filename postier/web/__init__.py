"""postier.web"""
