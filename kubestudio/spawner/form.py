"""The spawn form: profiles, projects and per-profile options as one HTML fragment.

Shared by the local and the Kubernetes spawner; what a profile cannot do here (no GPUs, no
code-server) is passed in as reasons and shown next to the disabled choice.
"""

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


def render_spawn_form(
    catalog,
    projects,
    profile_unavailable=None,
    ide_unavailable=None,
    previous=None,
    own_images=(),
    own_images_note=None,
    own_images_prefix=None,
    runs_here=None,
    other_profiles_html="",
    preselect=True,
    image_here=None,
):
    """Render the form; ``previous`` (last ``user_options``) preselects the user's last choice.

    ``own_images`` (references the user built) are offered by profiles with ``custom_images``.
    ``runs_here``: where the spawner cannot run images (the embedded default), what a server really
    runs; the image choices are then labelled as applying elsewhere instead of promised, or, with
    ``image_here(image)`` (what a server of that image really runs here, None: the image itself),
    each with what it runs here.
    ``catalog`` may be None (no catalog); ``other_profiles_html`` (KubeSpawner's own profile_list
    form, already rendered) is shown above the catalog's cards in the same radio group, and
    ``preselect=False`` leaves the preselected profile to it.
    """
    profiles = catalog.profiles if catalog else []
    profile_unavailable = profile_unavailable or {}
    ide_unavailable = ide_unavailable or {}
    previous = previous or {}
    project_names = [n for n, p in projects.items() if not isinstance(p, ProjectError)]
    chosen_project = previous.get("project")
    if chosen_project not in project_names:
        chosen_project = PUBLIC_PROJECT

    project_rows = []
    for name, project in projects.items():
        error = str(project) if isinstance(project, ProjectError) else ""
        project_rows.append(
            {
                "name": name,
                "label": name if error else project.label,
                "description": "" if error else project.description,
                "error": error,
                "selected": name == chosen_project,
            }
        )

    chosen_slug = previous.get("profile")
    usable = [p.slug for p in profiles if p.slug not in profile_unavailable]
    if chosen_slug not in usable and not preselect:
        chosen_slug = None
    elif chosen_slug not in usable:
        default = catalog.default.slug
        chosen_slug = default if default in usable else (usable[0] if usable else None)

    profile_rows = []
    for profile in profiles:
        allowed_in = [
            n for n in project_names if profile.allows_project(n) and projects[n].allows_profile(profile.slug)
        ]
        mine = profile.slug == chosen_slug
        wanted_ide = previous.get("ide") if mine else None
        if wanted_ide not in profile.ides or wanted_ide in ide_unavailable:
            wanted_ide = next((i for i in profile.ides if i not in ide_unavailable), profile.default_ide)
        wanted_image = previous.get("image") if mine else None
        mine_offered = list(own_images) if profile.custom_images else []
        if not profile.image_choice(wanted_image or "") and wanted_image not in mine_offered:
            wanted_image = profile.images[0].name if profile.images else None
        wanted_gpus = str(previous.get("gpus")) if mine else None
        selected_gpus = profile.default_gpus
        for n in profile.gpu_counts:
            if str(n) == wanted_gpus:
                selected_gpus = n
        reason = profile_unavailable.get(profile.slug)
        if not reason and all(i in ide_unavailable for i in profile.ides):
            reason = ide_unavailable[profile.ides[0]]
        profile_rows.append(
            {
                "slug": profile.slug,
                "display_name": profile.display_name,
                "description": profile.description,
                "summary": profile.summary(),
                "reason": reason,
                "selected": mine and not reason,
                "projects": allowed_in,
                "ides": [
                    {
                        "name": i,
                        "label": IDE_LABELS[i],
                        "reason": ide_unavailable.get(i, ""),
                        "selected": i == wanted_ide,
                    }
                    for i in profile.ides
                ],
                "images": [
                    {
                        "name": c.name,
                        "display_name": _image_label(c, runs_here, image_here),
                        "image": c.image,
                        "selected": c.name == wanted_image,
                    }
                    for c in profile.images
                ],
                "own_images": [
                    {
                        "image": ref,
                        "label": ref[len(own_images_prefix) :]
                        if own_images_prefix and ref.startswith(own_images_prefix)
                        else ref,
                        "selected": ref == wanted_image,
                    }
                    for ref in mine_offered
                ],
                "own_images_note": own_images_note if profile.custom_images else None,
                "gpu_counts": list(profile.gpu_counts),
                "selected_gpus": selected_gpus,
            }
        )
    return _env.get_template("spawn_form.html").render(
        projects=project_rows,
        profiles=profile_rows,
        runs_here=runs_here,
        other_profiles_html=markupsafe.Markup(other_profiles_html),
    )
