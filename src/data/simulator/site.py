"""The simulated affiliate site: pages, their assets and links, response sizes and navigation.

The catalogue is built from `simulate.site`. It has a home page, category pages, product
review pages with affiliate links `/go/<merchant>/<product>`, and blog posts with comment
forms. Beside them are a feed, robots.txt, a login page and a contact form. Every page carries
one hidden honeypot link that humans never follow. Sizes are drawn once per path, so a path always returns the same
number of bytes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import numpy as np

from src.data.simulator.settings import Settings

CONTENT_KINDS: tuple[str, ...] = ("home", "category", "product", "blog")
# Size key in `site.sizes` for each asset file extension.
ASSET_SIZE_KEYS: dict[str, str] = {
    ".css": "css",
    ".js": "js",
    ".woff2": "font",
    ".svg": "svg",
    ".jpg": "image",
    ".webp": "image",
    ".ico": "favicon",
}


@dataclass(frozen=True)
class Page:
    """One HTML page of the catalogue with the paths it references."""

    path: str
    kind: str
    size: int
    images: tuple[str, ...]
    trap: str
    category: str = ""
    affiliate_links: tuple[str, ...] = ()
    comment_path: str = ""


@dataclass
class Site:
    """The catalogue with lookups used by the traffic families."""

    scheme: str
    host: str
    paths: Settings
    sizes: Settings
    pages: list[Page]
    shared_assets: tuple[str, ...]
    asset_sizes: dict[str, int]
    special_sizes: dict[str, int]
    robots_disallow: tuple[str, ...]
    categories: tuple[str, ...]
    by_kind: dict[str, list[Page]] = field(default_factory=dict)
    products_by_category: dict[str, list[Page]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind in CONTENT_KINDS:
            self.by_kind[kind] = [page for page in self.pages if page.kind == kind]
        for category in self.categories:
            self.products_by_category[category] = [
                page for page in self.by_kind["product"] if page.category == category
            ]

    @property
    def home(self) -> Page:
        return self.by_kind["home"][0]

    def url(self, path: str) -> str:
        """Return the absolute URL of a site path, as browsers send it in the Referer header."""
        return f"{self.scheme}://{self.host}{path}"

    def path(self, name: str) -> str:
        """Return the fixed path configured as `site.paths.<name>`, such as the login page."""
        return str(self.paths.raw(name))

    def size(self, key: str) -> int:
        """Return the fixed body size of a special path (`feed`, `robots`, `login`, `contact`...)."""
        return self.special_sizes[key]

    def draw_size(self, key: str, rng: np.random.Generator) -> int:
        """Draw a body size for one response of kind `key` in `site.sizes` (`not_found`, `redirect`...)."""
        return self.sizes.dist(key).draw_int(rng)

    def page_assets(self, page: Page) -> list[str]:
        """Return the assets a browser requests for `page`: shared assets first, then its images."""
        return list(self.shared_assets) + list(page.images)

    def is_disallowed(self, path: str) -> bool:
        """Return whether robots.txt disallows `path`."""
        return any(path.startswith(prefix) for prefix in self.robots_disallow)

    def pick(self, kind: str, rng: np.random.Generator) -> Page:
        """Draw one page of `kind` uniformly."""
        pages = self.by_kind[kind]
        return pages[int(rng.integers(len(pages)))]

    def pick_product(self, rng: np.random.Generator, category: str, same_category_prob: float) -> Page:
        """Draw a product page, from `category` with probability `same_category_prob` when it has products."""
        same = self.products_by_category.get(category, [])
        if same and rng.random() < same_category_prob:
            return same[int(rng.integers(len(same)))]
        return self.pick("product", rng)

    def missing_path(self, rng: np.random.Generator) -> str:
        """Return a stale product link, which gets 404."""
        category = self.categories[int(rng.integers(len(self.categories)))]
        return self.path("missing").format(category=category, n=int(rng.integers(1, 100)))


def build_site(site_cfg: Settings, host: str, rng: np.random.Generator) -> Site:
    """Build the catalogue from `simulate.site`; `rng` draws slugs, links and sizes."""
    paths = site_cfg.section("paths")
    sizes = site_cfg.section("sizes")
    categories = tuple(str(name) for name in site_cfg.raw("categories"))
    traps = [paths.raw("trap").format(token=_token(rng)) for _ in range(int(site_cfg.number("trap_links", 1)))]

    pages = [_make_page(site_cfg, rng, "home", paths.raw("home"), traps, {})]
    for category in categories:
        path = paths.raw("category").format(category=category)
        pages.append(_make_page(site_cfg, rng, "category", path, traps, {"category": category}))
    pages.extend(_make_products(site_cfg, rng, categories, traps))
    pages.extend(_make_blog_posts(site_cfg, rng, traps))

    shared = tuple(str(path) for path in site_cfg.raw("shared_assets"))
    asset_paths = list(shared) + [paths.raw("favicon")] + [image for page in pages for image in page.images]
    asset_sizes = {path: sizes.dist(_asset_size_key(path)).draw_int(rng) for path in dict.fromkeys(asset_paths)}

    special = {
        "feed": sizes.dist("feed").draw_int(rng),
        "robots": sizes.dist("robots").draw_int(rng),
        "login": sizes.dist("form").draw_int(rng),
        "account": sizes.dist("page").draw_int(rng),
        "contact": sizes.dist("form").draw_int(rng),
        "contact_sent": sizes.dist("form").draw_int(rng),
        "trap": sizes.dist("form").draw_int(rng),
    }
    return Site(
        scheme=str(site_cfg.raw("scheme")),
        host=host,
        paths=paths,
        sizes=sizes,
        pages=pages,
        shared_assets=shared,
        asset_sizes=asset_sizes,
        special_sizes=special,
        robots_disallow=tuple(str(prefix) for prefix in site_cfg.raw("robots_disallow")),
        categories=categories,
    )


def _make_page(
    site_cfg: Settings, rng: np.random.Generator, kind: str, path: str, traps: list[str], fields: dict[str, str]
) -> Page:
    """Build one page of `kind`; `fields` fill the image path template (category, product, post)."""
    image_count = site_cfg.section("page_images").dist(kind).draw_int(rng)
    template = str(site_cfg.section("image_paths").raw(kind))
    images = tuple(template.format(n=n, **fields) for n in range(1, image_count + 1))
    return Page(
        path=path,
        kind=kind,
        size=site_cfg.section("sizes").dist("page").draw_int(rng),
        images=images,
        trap=traps[int(rng.integers(len(traps)))],
        category=fields.get("category", ""),
    )


def _make_products(site_cfg: Settings, rng: np.random.Generator, categories: tuple[str, ...], traps: list[str]) -> list[Page]:
    """Build the product review pages, each with one affiliate link per merchant that sells it."""
    paths = site_cfg.section("paths")
    merchants = [str(name) for name in site_cfg.raw("merchants")]
    names = _unique_slugs(site_cfg.raw("product_words"), site_cfg.raw("product_models"), rng)
    per_category = int(site_cfg.number("products_per_category", 1))
    pages: list[Page] = []

    for category in categories:
        for _ in range(per_category):
            product = next(names)
            path = paths.raw("product").format(category=category, product=product)
            page = _make_page(site_cfg, rng, "product", path, traps, {"category": category, "product": product})
            count = min(len(merchants), max(1, site_cfg.dist("merchants_per_product").draw_int(rng)))
            chosen = rng.choice(len(merchants), size=count, replace=False)
            links = tuple(paths.raw("affiliate").format(merchant=merchants[i], product=product) for i in sorted(chosen))
            pages.append(replace(page, affiliate_links=links))
    return pages


def _make_blog_posts(site_cfg: Settings, rng: np.random.Generator, traps: list[str]) -> list[Page]:
    """Build the blog posts, each with its own comment form path."""
    paths = site_cfg.section("paths")
    years = [int(year) for year in site_cfg.raw("blog_years")]
    words = [str(word) for word in site_cfg.raw("blog_words")]
    slugs = _unique_slugs(words, words, rng)
    pages: list[Page] = []

    for _ in range(int(site_cfg.number("blog_posts", 0))):
        post = next(slugs)
        year = years[int(rng.integers(len(years)))]
        page = _make_page(site_cfg, rng, "blog", paths.raw("blog").format(year=year, post=post), traps, {"post": post})
        comment = paths.raw("comment").format(year=year, post=post)
        pages.append(replace(page, comment_path=comment))
    return pages


def _unique_slugs(first: list[str], second: list[str], rng: np.random.Generator):
    """Yield distinct `<first>-<second>` slugs in random order, adding a number once the pairs run out."""
    pairs = [f"{a}-{b}" for a, b in itertools.product(first, second) if a != b]
    order = rng.permutation(len(pairs))
    for round_number in itertools.count(1):
        for index in order:
            yield pairs[index] if round_number == 1 else f"{pairs[index]}-{round_number}"


def _asset_size_key(path: str) -> str:
    """Return the `site.sizes` key for an asset path by its file extension."""
    for extension, key in ASSET_SIZE_KEYS.items():
        if path.endswith(extension):
            return key
    raise ValueError(
        f"invalid asset path {path!r} in simulate.site: its extension is not one of {sorted(ASSET_SIZE_KEYS)}"
    )


def _token(rng: np.random.Generator) -> str:
    """Return a random 8-character hex token for a honeypot link."""
    return f"{int(rng.integers(0, 2**32)):08x}"
