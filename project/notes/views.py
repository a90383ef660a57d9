import socket
import time

from django import forms
from django.conf import settings
from django.core.files.storage import default_storage
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from .models import Note


class NoteForm(forms.ModelForm):
    class Meta:
        model = Note
        fields = ["text"]


def _has_db():
    return bool(settings.DATABASES.get("default", {}).get("NAME"))


@require_http_methods(["GET", "HEAD", "POST"])
def index(request):
    """Lists notes and creates one (POST, CSRF-protected). Without a database it renders a notice."""
    if not _has_db():
        return render(request, "notes/index.html", {"form": NoteForm(), "notes": [], "no_db": True})
    form = NoteForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            form.save()
            return redirect("index")
        status = 400
    else:
        status = 200
    notes = Note.objects.all()[:50]
    return render(request, "notes/index.html", {"form": form, "notes": notes, "no_db": False}, status=status)


@require_GET
def slow(request):
    """Test-only (DJANGO_TEST_ENDPOINTS=on): sleeps ?seconds=N (at most 20) to prove graceful stop.

    Safe to ship: the URL does not exist unless the variable is on, it reads nothing, and harakiri bounds it.
    """
    try:
        seconds = min(float(request.GET.get("seconds", "2")), 20.0)
    except ValueError:
        return HttpResponseBadRequest("seconds must be a number")
    print(f"slow request started ({seconds:g}s)", flush=True)  # tests wait for this line before `docker stop`
    time.sleep(seconds)
    return HttpResponse(f"slept {seconds:g}", content_type="text/plain")


@csrf_exempt
@require_http_methods(["GET", "POST"])
def upload(request):
    """Test-only (DJANGO_TEST_ENDPOINTS=on): POST a file (field ``file``) into the uploads storage (MEDIA: S3 or
    a volume, see djdeploy_django.storage) and get its stored name; GET ?name=uploads/... reads it back.
    X-Served-By names the container that answered, so a test can read through another replica."""
    if request.method == "POST":
        upload = request.FILES.get("file")
        if upload is None:
            return HttpResponseBadRequest("no file field")
        response = HttpResponse(default_storage.save(f"uploads/{upload.name}", upload), status=201,
                                content_type="text/plain")
    else:
        name = request.GET.get("name", "")
        if not name.startswith("uploads/") or not default_storage.exists(name):
            return HttpResponse("not found", status=404, content_type="text/plain")
        with default_storage.open(name) as fh:
            response = HttpResponse(fh.read(), content_type="application/octet-stream")
    response["X-Served-By"] = socket.gethostname()
    return response
