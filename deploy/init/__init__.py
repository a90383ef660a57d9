"""`inv init PATH`: prepare an existing Django project for the toolkit.

detect.py  what the project is (settings, WSGI, manage.py, requirements): read with ``ast``, never imported
render.py  the files to write, rendered from the repository's own files (deploy/templates) with the detected names
write.py   the plan (write what is missing, skip what exists) and the one function that writes it
"""
