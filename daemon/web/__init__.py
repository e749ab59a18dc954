"""genred web: the review page, the library and models pages, and the JSON API they use.

``app`` builds the ASGI app, ``server`` runs it (``genred web``, ``genred run --web``),
``security`` decides who may do what, ``api`` / ``pages`` are the routes, ``audio`` serves
(and where needed transcodes) the catalogued files, ``labels`` takes corrections through the
storage functions ``genred correct`` uses, ``jobs`` runs the retrain job for the button.
"""
