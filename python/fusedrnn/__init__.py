"""fusedrnn"""
