"""postier.store.sqlite"""
