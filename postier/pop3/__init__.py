"""postier.pop3"""
