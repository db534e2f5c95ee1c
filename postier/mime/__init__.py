"""postier.mime"""
