"""postier.queue"""
