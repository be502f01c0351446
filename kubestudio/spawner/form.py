"""The spawn form: profiles, projects and per-profile options as one HTML fragment.

Shared by the local and the Kubernetes spawner; what a profile cannot do here (no GPUs, no
code-server) is passed in as reasons and shown next to the disabled choice.
"""

from dataclasses import dataclass, field

import jinja2
import markupsafe

from .profiles import IDE_LABELS
from .projects import PUBLIC_PROJECT, ProjectError

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("kubestudio.spawner", "templates"),
    autoescape=True,
)


def _image_label(choice, runs_here, image_here):
    """A profile's image choice as the form names it: what a server of it runs on this machine."""
    if image_here is not None:
        here = image_here(choice.image)
        return f"{choice.display_name} · here: {here}" if here else choice.display_name
    return choice.display_name + (" (on Kubernetes)" if runs_here else "")


@dataclass
class FormContext:
    """What the machine and the user add to the catalog on the form.

    ``profile_unavailable`` / ``ide_unavailable``: {slug or IDE: why it cannot start here}, shown
    next to the disabled choice. ``previous`` (the last ``user_options``) preselects the user's
    last choice. ``own_images`` (references the user built) are offered by profiles with
    ``custom_images``, labelled without ``own_images_prefix``; ``own_images_note`` says why they
    cannot be listed. ``runs_here``: where the spawner cannot run images (the embedded default),
    what a server really runs; the image choices are then labelled as applying elsewhere instead of
    promised, or, with ``image_here(image)`` (what a server of that image really runs here, None:
    the image itself), each with what it runs here. ``other_profiles_html`` (KubeSpawner's own
    profile_list form, already rendered) is shown above the catalog's cards in the same radio
    group, and ``preselect=False`` leaves the preselected profile to it.
    """

    profile_unavailable: dict = field(default_factory=dict)
    ide_unavailable: dict = field(default_factory=dict)
    previous: dict = field(default_factory=dict)
    own_images: list = field(default_factory=list)
    own_images_note: str = None
    own_images_prefix: str = None
    runs_here: str = None
    image_here: object = None
    other_profiles_html: str = ""
    preselect: bool = True


def render_spawn_form(catalog, projects, context=None):
    """The form for ``catalog`` (None: no catalog) and the user's ``projects``, with what
    ``context`` (a :class:`FormContext`) adds."""
    context = context or FormContext()
    profiles = catalog.profiles if catalog else []
    previous = context.previous or {}
    project_names = [n for n, p in projects.items() if not isinstance(p, ProjectError)]
    chosen_project = previous.get("project")
    if chosen_project not in project_names:
        chosen_project = PUBLIC_PROJECT
    chosen_slug = _chosen_profile(catalog, profiles, previous.get("profile"), context)
    return _env.get_template("spawn_form.html").render(
        projects=_project_rows(projects, chosen_project),
        profiles=[
            _profile_row(profile, profile.slug == chosen_slug, projects, project_names, previous, context)
            for profile in profiles
        ],
        runs_here=context.runs_here,
        other_profiles_html=markupsafe.Markup(context.other_profiles_html),
    )


def _project_rows(projects, chosen):
    rows = []
    for name, project in projects.items():
        error = str(project) if isinstance(project, ProjectError) else ""
        rows.append(
            {
                "name": name,
                "label": name if error else project.label,
                "description": "" if error else project.description,
                "error": error,
                "selected": name == chosen,
            }
        )
    return rows


def _chosen_profile(catalog, profiles, wanted, context):
    """The profile preselected: the user's last one if it can start here, else the catalog's
    default, else the first that can; None when another form preselects its own."""
    usable = [p.slug for p in profiles if p.slug not in context.profile_unavailable]
    if wanted in usable:
        return wanted
    if not context.preselect:
        return None
    default = catalog.default.slug
    return default if default in usable else (usable[0] if usable else None)


def _profile_row(profile, mine, projects, project_names, previous, context):
    """One profile's card: its projects, IDEs, images (and the user's own), GPU counts, and why it
    cannot start here; ``mine``: the preselected one, where the user's last choices are kept."""
    ide_unavailable = context.ide_unavailable
    allowed_in = [n for n in project_names if profile.allows_project(n) and projects[n].allows_profile(profile.slug)]
    wanted_ide = previous.get("ide") if mine else None
    if wanted_ide not in profile.ides or wanted_ide in ide_unavailable:
        wanted_ide = next((i for i in profile.ides if i not in ide_unavailable), profile.default_ide)
    wanted_image = previous.get("image") if mine else None
    mine_offered = list(context.own_images) if profile.custom_images else []
    if not profile.image_choice(wanted_image or "") and wanted_image not in mine_offered:
        wanted_image = profile.images[0].name if profile.images else None
    wanted_gpus = str(previous.get("gpus")) if mine else None
    selected_gpus = next((n for n in profile.gpu_counts if str(n) == wanted_gpus), profile.default_gpus)
    reason = context.profile_unavailable.get(profile.slug)
    if not reason and all(i in ide_unavailable for i in profile.ides):
        reason = ide_unavailable[profile.ides[0]]
    prefix = context.own_images_prefix
    return {
        "slug": profile.slug,
        "display_name": profile.display_name,
        "description": profile.description,
        "summary": profile.summary(),
        "reason": reason,
        "selected": mine and not reason,
        "projects": allowed_in,
        "ides": [
            {"name": i, "label": IDE_LABELS[i], "reason": ide_unavailable.get(i, ""), "selected": i == wanted_ide}
            for i in profile.ides
        ],
        "images": [
            {
                "name": c.name,
                "display_name": _image_label(c, context.runs_here, context.image_here),
                "image": c.image,
                "selected": c.name == wanted_image,
            }
            for c in profile.images
        ],
        "own_images": [
            {
                "image": ref,
                "label": ref[len(prefix) :] if prefix and ref.startswith(prefix) else ref,
                "selected": ref == wanted_image,
            }
            for ref in mine_offered
        ],
        "own_images_note": context.own_images_note if profile.custom_images else None,
        "gpu_counts": list(profile.gpu_counts),
        "selected_gpus": selected_gpus,
    }
