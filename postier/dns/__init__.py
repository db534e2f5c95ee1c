"""postier.dns"""
