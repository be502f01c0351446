import re

from kubestudio.spawner.form import FormContext, render_spawn_form
from kubestudio.spawner.profiles import parse_catalog
from kubestudio.spawner.projects import user_projects

CATALOG = parse_catalog(
    {
        "profiles": [
            {"slug": "cpu", "default": True, "ide": ["jupyterlab", "vscode"]},
            {
                "slug": "gpu",
                "gpu": {"count": [1, 2]},
                "images": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}],
            },
            {"slug": "code", "ide": "vscode"},
            {"slug": "vision-only", "projects": ["vision"]},
        ]
    }
)


class Group:
    def __init__(self, name, properties=None):
        self.name, self.properties = name, properties or {}


def card(html, slug):
    match = re.search(
        rf'<label class="ks-profile[^"]*" data-slug="{slug}".*?</label>\s*(?=<label class="ks-profile|</fieldset>)',
        html,
        re.S,
    )
    assert match, slug
    return match.group(0)


def test_form_shows_reasons_and_disables():
    projects = user_projects([Group("vision"), Group("broken", {"max_gpus": "lots"})])
    html = render_spawn_form(
        CATALOG,
        projects,
        FormContext(
            profile_unavailable={"gpu": "this machine has no GPU"},
            ide_unavailable={"vscode": "code-server is not installed"},
        ),
    )
    gpu = card(html, "gpu")
    assert "ks-disabled" in gpu and "Unavailable: this machine has no GPU" in gpu
    assert re.search(r'value="gpu"\s+disabled', gpu)
    code = card(html, "code")
    assert "Unavailable: code-server is not installed" in code
    cpu = card(html, "cpu")
    assert "ks-disabled" not in cpu and "checked" in cpu
    assert re.search(r'<option value="vscode" disabled', cpu)
    # project list: public first and selected; broken project disabled with its reason
    assert re.search(r'<option value="public"\s+selected', html)
    assert re.search(r'<option value="broken"\s+disabled', html)
    assert "max_gpus: must be an integer" in html
    # the project-only profile is offered only in that project
    assert 'data-projects="vision"' in card(html, "vision-only")
    assert 'data-projects="public vision"' in cpu


def test_form_preselects_previous_choice():
    html = render_spawn_form(
        CATALOG,
        user_projects([Group("vision")]),
        FormContext(previous={"profile": "gpu", "project": "vision", "image": "b", "gpus": 2}),
    )
    gpu = card(html, "gpu")
    assert "checked" in gpu and "checked" not in card(html, "cpu")
    assert re.search(r'<option value="b" title="b:1" selected', gpu)
    assert re.search(r'<option value="2" selected', gpu)
    assert re.search(r'<option value="vision"\s+selected', html)


def test_form_escapes_text():
    catalog = parse_catalog({"profiles": [{"slug": "x", "display_name": "<script>alert(1)</script>"}]})
    html = render_spawn_form(catalog, user_projects([]))
    assert "<script>alert(1)" not in html and "&lt;script&gt;" in html


def test_form_offers_built_images_for_custom_image_profiles():
    catalog = parse_catalog(
        {
            "profiles": [
                {"slug": "own", "custom_images": True, "images": ["base:1"]},
                {"slug": "fixed", "images": ["base:1"]},
            ]
        }
    )
    projects = user_projects([])
    mine = ["reg:5000/kubestudio/alice/tools:1", "reg:5000/kubestudio/alice/<b>:2"]
    html = render_spawn_form(
        catalog,
        projects,
        FormContext(
            own_images=mine,
            own_images_prefix="reg:5000/kubestudio/alice/",
            previous={"profile": "own", "image": mine[0]},
        ),
    )
    own = card(html, "own")
    assert '<optgroup label="Your images">' in own
    assert f'<option value="{mine[0]}" title="{mine[0]}" selected>tools:1</option>' in own
    assert "&lt;b&gt;:2" in own and "<b>" not in own
    assert "Your images" not in card(html, "fixed")
    down = render_spawn_form(
        catalog, projects, FormContext(own_images_note="your built images cannot be listed right now")
    )
    assert "cannot be listed right now" in card(down, "own") and "cannot be listed" not in card(down, "fixed")


def test_form_says_what_runs_where_images_are_not_used():
    projects = user_projects([Group("public")])
    honest = render_spawn_form(CATALOG, projects, FormContext(runs_here="every server runs the hub's own Python 3.11"))
    assert "(on Kubernetes)" in card(honest, "gpu")
    # said once, above the profiles, not on every card
    assert honest.count("every server runs the hub&#39;s own Python 3.11") == 1
    assert "ks-runs-here" not in card(honest, "gpu")
    plain = render_spawn_form(CATALOG, projects)
    assert "(on Kubernetes)" not in plain and "ks-runs-here" not in plain
    # where the spawner says what each image runs here, the label says that, not a promise
    labelled = render_spawn_form(
        CATALOG,
        projects,
        FormContext(
            runs_here="servers run in the local image",
            image_here=lambda image: "KubeStudio's single-user image (Python 3.11, JupyterLab)",
        ),
    )
    assert "here: KubeStudio&#39;s single-user image (Python 3.11, JupyterLab)" in card(labelled, "gpu")
    assert "(on Kubernetes)" not in labelled
