"""postier.mailauth"""
