"""postier.server"""
