"""postier.smtp"""
